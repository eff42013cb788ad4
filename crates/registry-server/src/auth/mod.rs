//! Who is calling and what they may do.
//!
//! A bearer token belongs to an account (a slug and a role). Tokens are random enough
//! (190 bits) that a fast SHA-256 is a safe way to store them. A request is checked
//! against memory, never the database: a token seen before under the current revision of
//! the tokens is one cache lookup; a new one is hashed and looked up once. A revocation
//! moves that revision on, so a revoked token fails on its very next request.

mod actor;
mod caller;
mod tokens;

pub(crate) use actor::{Actor, ENV_ADMIN_TOKEN_ID};
pub(crate) use caller::Caller;
pub(crate) use caller::{AuthState, TokenTable};
pub(crate) use tokens::{bootstrap_admin_token, hash_token, new_token, StoredToken};

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

    /// Admins may do everything; users may look, and manage their own instances.
    pub(crate) fn granted_to(self, role: Role) -> bool {
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
}
