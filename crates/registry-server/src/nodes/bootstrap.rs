//! The registry's first admin token, made by whichever node commits it first.
//!
//! A daemon starting on a store that holds no token writes a new admin token's secret to
//! its data dir, then asks the writer to store the token only if the store still holds
//! none ([`Command::BootstrapToken`]). Of several nodes starting together on one empty
//! database, one commit wins; the others remove the file they wrote (its token was never
//! stored) and log where the winner's secret is. Tokens are stored hashed, so no node can
//! write the winner's secret for itself. A node starting on a store with tokens makes
//! nothing, and says what it knows of the first token and of its own token file.

use super::ThisNode;
use crate::auth;
use crate::state::{Command, Registry, Writer};
use crate::Error;
use anyhow::Context;
use registry_types::constants::ADMIN_TOKEN_FILE;
use std::path::Path;

/// Makes the registry's first admin token unless it holds tokens already (see the
/// module's documentation).
pub(crate) async fn ensure_admin_token(
    registry: &Registry,
    writer: &Writer,
    this_node: &ThisNode,
    data_dir: &Path,
) -> anyhow::Result<()> {
    if registry.read().tokens().next().is_some() {
        report_existing(registry, this_node, data_dir);
        return Ok(());
    }
    let (token, path) = auth::bootstrap_admin_token(data_dir, &this_node.url)
        .with_context(|| format!("writing the admin token into {}", data_dir.display()))?;
    match writer
        .submit(&this_node.actor, Command::BootstrapToken(token))
        .await
    {
        Ok(_) => {
            tracing::info!(
                path = %path.display(),
                node = %this_node.url,
                "created the registry's first admin token; it is in this file"
            );
            Ok(())
        }
        Err(Error::Conflict(_)) => {
            // Another node's token got in first; this secret opens nothing.
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the unused {}", path.display()))?;
            tracing::info!(
                path = %path.display(),
                node = %this_node.url,
                "another node stored the registry's first admin token first; removed the \
                 unused one this node had written"
            );
            report_existing(registry, this_node, data_dir);
            Ok(())
        }
        // The file stays: the token may have been stored before the failure.
        Err(e) => Err(e).context("storing the first admin token"),
    }
}

/// Logs, for a node that made no admin token, where the registry's first one is, and
/// whether a token file in its own data dir opens anything.
fn report_existing(registry: &Registry, this_node: &ThisNode, data_dir: &Path) {
    let own_file = data_dir.join(ADMIN_TOKEN_FILE);
    let tables = registry.read();
    if let Ok(secret) = std::fs::read_to_string(&own_file) {
        match tables.token_by_hash(&auth::hash_token(secret.trim())) {
            Some(token) => tracing::info!(
                path = %own_file.display(),
                token = %token.id,
                "the admin token in this file is one of the registry's tokens"
            ),
            None => tracing::warn!(
                path = %own_file.display(),
                "this file holds no token of this registry (revoked, or made for another \
                 registry); remove it"
            ),
        }
        return;
    }
    let first = tables
        .tokens()
        .filter_map(|t| Some((t, t.written_to.as_ref()?)))
        .min_by_key(|(t, _)| t.created_at);
    match first {
        Some((token, written_to)) => tracing::info!(
            node = %this_node.url,
            token = %token.id,
            created_at = %token.created_at,
            holder = %written_to.node,
            file = %written_to.path,
            "the registry holds tokens already, so this node made no admin token file; \
             the registry's first admin token is in `file` on the node `holder`"
        ),
        None => tracing::info!(
            node = %this_node.url,
            tokens = tables.tokens().count(),
            "the registry holds tokens already, so this node made no admin token file; \
             its first admin token is gone or older than the record of where it was \
             written: use an admin token you hold, or REGISTRY_ADMIN_TOKEN"
        ),
    }
}
