/**
 * The default permissions and system groups (API.md "The default data").
 * Seeding inserts what is missing; routes name these codenames in their
 * `config.permissions`, so import them from here rather than retyping strings.
 */

export interface DefaultPermission {
  readonly codename: string
  readonly name: string
  readonly category: string
  readonly description: string
}

export const defaultPermissions = [
  { codename: 'view_dashboard', name: 'View dashboard', category: 'dashboard', description: 'Read the dashboard statistics' },
  { codename: 'view_profile', name: 'View profile', category: 'profile', description: 'Read one\'s own profile and settings' },
  { codename: 'edit_profile', name: 'Edit profile', category: 'profile', description: 'Change one\'s own profile and settings' },
  { codename: 'view_user', name: 'View users', category: 'user', description: 'Read other users\' profiles, groups and permissions' },
  { codename: 'manage_users', name: 'Manage users', category: 'user', description: 'List and search users, and change other users\' accounts' },
  { codename: 'view_permission', name: 'View permissions', category: 'permission', description: 'List and read permissions' },
  { codename: 'add_permission', name: 'Add permissions', category: 'permission', description: 'Create permissions' },
  { codename: 'edit_permission', name: 'Edit permissions', category: 'permission', description: 'Change permissions' },
  { codename: 'delete_permission', name: 'Delete permissions', category: 'permission', description: 'Delete permissions' },
  { codename: 'view_group', name: 'View groups', category: 'group', description: 'List and read groups' },
  { codename: 'add_group', name: 'Add groups', category: 'group', description: 'Create groups' },
  { codename: 'edit_group', name: 'Edit groups', category: 'group', description: 'Change groups and the permissions they grant' },
  { codename: 'delete_group', name: 'Delete groups', category: 'group', description: 'Delete groups' },
  { codename: 'assign_groups', name: 'Assign groups', category: 'group', description: 'Add users to groups and remove them' },
  { codename: 'view_activity_log', name: 'View activity log', category: 'activity', description: 'Read everyone\'s activity log and its statistics' },
  { codename: 'delete_activity_log', name: 'Delete activity log', category: 'activity', description: 'Delete old activity log entries' },
  { codename: 'add_upload', name: 'Upload files', category: 'upload', description: 'Upload files' },
  { codename: 'delete_upload', name: 'Delete uploads', category: 'upload', description: 'Delete any user\'s uploaded files' },
  { codename: 'view_system_health', name: 'View system health', category: 'health', description: 'Read host and dependency details of the health checks' },
  { codename: 'test_sentry', name: 'Test Sentry', category: 'health', description: 'Send a test event to Sentry' }
] as const satisfies readonly DefaultPermission[]

export type PermissionCodename = typeof defaultPermissions[number]['codename']

export const allPermissionCodenames: readonly PermissionCodename[] = defaultPermissions.map((p) => p.codename)

export interface DefaultGroup {
  readonly codename: string
  readonly name: string
  readonly description: string
  readonly permissions: readonly PermissionCodename[]
}

export const SUPER_ADMIN_GROUP = 'super_admin'
export const ADMIN_GROUP = 'admin'
/** The group every new account joins. */
export const DEFAULT_USER_GROUP = 'user'

// Administrators run the service but do not redefine what a permission is,
// and do not fire test events into the error tracker.
const notForAdmins: readonly PermissionCodename[] = ['add_permission', 'edit_permission', 'delete_permission', 'test_sentry']

export const defaultGroups = [
  {
    codename: SUPER_ADMIN_GROUP,
    name: 'Super Admin',
    description: 'Every permission; the only group that may change system groups and super admin membership',
    permissions: allPermissionCodenames
  },
  {
    codename: ADMIN_GROUP,
    name: 'Admin',
    description: 'Manages users, groups and content',
    permissions: allPermissionCodenames.filter((codename) => !notForAdmins.includes(codename))
  },
  {
    codename: 'developer',
    name: 'Developer',
    description: 'Operates the service: activity log, system health, error tracking',
    permissions: ['view_dashboard', 'view_profile', 'edit_profile', 'view_activity_log', 'view_system_health', 'test_sentry', 'add_upload']
  },
  {
    codename: 'business',
    name: 'Business',
    description: 'Reads the dashboard and user profiles',
    permissions: ['view_dashboard', 'view_profile', 'edit_profile', 'view_user', 'add_upload']
  },
  {
    codename: 'accountant',
    name: 'Accountant',
    description: 'Reads the dashboard',
    permissions: ['view_dashboard', 'view_profile', 'edit_profile', 'add_upload']
  },
  {
    codename: DEFAULT_USER_GROUP,
    name: 'User',
    description: 'Every account: its own profile and uploads',
    permissions: ['view_profile', 'edit_profile', 'add_upload']
  }
] as const satisfies readonly DefaultGroup[]

export type SystemGroupCodename = typeof defaultGroups[number]['codename']
