//! Who is calling and what they may do.
//!
//! A bearer token belongs to an account (a slug and a role). Tokens are random enough
//! (190 bits) that a fast SHA-256 is a safe way to store them. A request is checked
//! against memory, never the database: a token seen before under the current revision of
//! the tokens is one cache lookup; a new one is hashed and looked up once. A revocation
//! moves that revision on, so a revoked token fails on its very next request.
//!
//! Beside these, a JWT signed by the platform's User Svc is accepted when the daemon is
//! given its key (`user_svc`, `user_svc_key`); it is verified on every request.

mod actor;
mod caller;
mod tokens;
mod user_svc;
mod user_svc_key;

pub(crate) use actor::{Actor, ENV_ADMIN_TOKEN_ID};
pub(crate) use caller::{bearer_token, Caller};
pub(crate) use caller::{AuthState, TokenTable};
pub(crate) use tokens::{bootstrap_admin_token, hash_token, new_token, StoredToken};
pub(crate) use user_svc_key::UserSvcKey;

use registry_types::Role;

/// The permissions of the spec's Auth table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    DefinitionView,
    DefinitionCreate,
    DefinitionEdit,
    DefinitionDelete,
    InstanceView,
    /// Register, change or remove one's own instances.
    InstanceEdit,
    NodeView,
    NodeDelete,
    TokenManage,
    /// Take a backup (it holds every token's hash) or restore one.
    Backup,
}

impl Permission {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Permission::DefinitionView => "registry-svc:definition:view",
            Permission::DefinitionCreate => "registry-svc:definition:create",
            Permission::DefinitionEdit => "registry-svc:definition:edit",
            Permission::DefinitionDelete => "registry-svc:definition:delete",
            Permission::InstanceView => "registry-svc:instance:view",
            Permission::InstanceEdit => "registry-svc:instance:edit",
            Permission::NodeView => "registry-svc:node:view",
            Permission::NodeDelete => "registry-svc:node:delete",
            Permission::TokenManage => "registry-svc:token:manage",
            Permission::Backup => "registry-svc:backup",
        }
    }

    /// Whether a caller of `role` has this permission, `trusted` when its slug is one of
    /// `--trusted-slugs`.
    pub(crate) fn granted(self, role: Role, trusted: bool) -> bool {
        self.granted_to(role) || (trusted && self.granted_to_trusted_slugs())
    }

    /// Admins may do everything; users may look, and manage their own instances.
    fn granted_to(self, role: Role) -> bool {
        match role {
            Role::Admin => true,
            Role::User => matches!(
                self,
                Permission::DefinitionView
                    | Permission::InstanceView
                    | Permission::InstanceEdit
                    | Permission::NodeView
            ),
        }
    }

    /// What the original registry grants `deploy-svc`, whatever its role: besides looking,
    /// deleting definitions and nodes, and managing the instances of every slug (which
    /// [`Caller::may_manage`] grants). Never saving definitions, tokens or backups.
    fn granted_to_trusted_slugs(self) -> bool {
        matches!(
            self,
            Permission::DefinitionView
                | Permission::DefinitionDelete
                | Permission::InstanceView
                | Permission::InstanceEdit
                | Permission::NodeView
                | Permission::NodeDelete
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Permission; 10] = [
        Permission::DefinitionView,
        Permission::DefinitionCreate,
        Permission::DefinitionEdit,
        Permission::DefinitionDelete,
        Permission::InstanceView,
        Permission::InstanceEdit,
        Permission::NodeView,
        Permission::NodeDelete,
        Permission::TokenManage,
        Permission::Backup,
    ];

    fn granted(role: Role, trusted: bool) -> Vec<&'static str> {
        ALL.into_iter()
            .filter(|p| p.granted(role, trusted))
            .map(Permission::name)
            .collect()
    }

    #[test]
    fn a_trusted_user_has_what_the_original_gives_deploy_svc() {
        assert_eq!(
            granted(Role::User, true),
            [
                "registry-svc:definition:view",
                "registry-svc:definition:delete",
                "registry-svc:instance:view",
                "registry-svc:instance:edit",
                "registry-svc:node:view",
                "registry-svc:node:delete",
            ]
        );
        assert_eq!(
            granted(Role::User, false),
            [
                "registry-svc:definition:view",
                "registry-svc:instance:view",
                "registry-svc:instance:edit",
                "registry-svc:node:view",
            ]
        );
        assert_eq!(granted(Role::Admin, false).len(), ALL.len());
    }
}
