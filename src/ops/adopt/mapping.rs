//! What to read from the old database: one SELECT per kind of record, whose columns are named
//! as redkeep's fields. The presets are such mappings for the documented seed apps; any
//! other schema gets a mapping file in the same TOML form.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The built-in mappings, by preset name.
pub const PRESETS: [(&str, &str); 4] = [
    ("chat", include_str!("presets/chat.toml")),
    ("code-monet", include_str!("presets/code-monet.toml")),
    ("puntini", include_str!("presets/puntini.toml")),
    ("tenancy", include_str!("presets/tenancy.toml")),
];

/// A SELECT whose columns carry redkeep's field names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The SQL.
    pub query: String,
}

/// The users' SELECT, with the documented default passwords of the old system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersQuery {
    /// The SQL. Columns: `id` and `email` and `password_hash` (required), `username`,
    /// `name`, `salt`, `is_admin`, `is_active`, `email_verified`, `must_change_password`,
    /// `avatar`, `current_org`, `last_login_at`, `created_at`, `updated_at`.
    pub query: String,
    /// Username → password the old system shipped with; an account still using it must
    /// change its password at the next login. Usernames are compared without case.
    #[serde(default)]
    pub default_passwords: BTreeMap<String, String>,
}

/// Where each user's folder is, below `--workspaces DIR`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspacesLayout {
    /// The folder of a user, with `{id}` for the user's id in the old system
    /// (`users/{id}`).
    pub folder: String,
}

/// A whole mapping: which SELECT gives which kind of record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// What the mapping is for.
    #[serde(default)]
    pub description: String,
    /// Users (required).
    pub users: UsersQuery,
    /// Roles: `id`, `name` (required), `description`, `permissions` (a JSON array or a
    /// comma-separated list), `priority`, `is_system`, `created_at`.
    pub roles: Option<Query>,
    /// Role grants: `user`, `role` (required), `active`, `assigned_at`, `assigned_by`.
    pub user_roles: Option<Query>,
    /// Organizations: `id`, `name` (required), `slug`, `description`, `is_default`,
    /// `created_at`, `updated_at`.
    pub orgs: Option<Query>,
    /// Memberships: `org`, `user` (required), `role` (`owner`, `admin` or `member`; default
    /// member), `joined_at`.
    pub org_members: Option<Query>,
    /// Invite codes: `code` (required), `created_at`, `expires_at`, `max_uses`, `uses`,
    /// `used_by`, `revoked`.
    pub invites: Option<Query>,
    /// Agent sessions: `id`, `user` (required), `name`, `goal`, `status`, `current_step`,
    /// `progress`, `failures`, `artifacts`, `context`, `escalation`, `created_at`,
    /// `updated_at`, `expires_at`.
    pub agent_sessions: Option<Query>,
    /// The layout of the old workspace folders (default `users/{id}`).
    pub workspaces: Option<WorkspacesLayout>,
}

impl Mapping {
    /// The built-in mapping `name` (`chat`, `code-monet`, `puntini`, `tenancy`).
    ///
    /// # Errors
    /// `InvalidInput` for an unknown preset, naming the known ones.
    pub fn preset(name: &str) -> Result<Mapping> {
        let text = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                Error::invalid(
                    "preset",
                    format!(
                        "there is no preset {name:?}; use one of {}, or --map FILE",
                        known.join(", ")
                    ),
                )
            })?;
        Mapping::parse(text)
    }

    /// A mapping written in TOML.
    ///
    /// # Errors
    /// `InvalidInput` naming what is wrong in the text.
    pub fn parse(text: &str) -> Result<Mapping> {
        let mapping: Mapping = toml::from_str(text)
            .map_err(|e| Error::invalid("mapping", e.to_string().trim().to_string()))?;
        // Without `{id}`, every account would get the one folder the pattern names.
        if let Some(w) = &mapping.workspaces
            && !w.folder.contains("{id}")
        {
            return Err(Error::invalid(
                "mapping",
                format!(
                    "workspaces.folder {:?} has no {{id}}: each user's folder must be named by \
                     the user's id (as in \"users/{{id}}\")",
                    w.folder
                ),
            ));
        }
        Ok(mapping)
    }

    /// The folder of a user, relative to the workspaces root.
    pub(crate) fn folder_of(&self, source_id: &str) -> String {
        let pattern = self
            .workspaces
            .as_ref()
            .map_or("users/{id}", |w| w.folder.as_str());
        pattern.replace("{id}", source_id)
    }
}
