//! `redkeep workspace …`, `redkeep gallery …` and `redkeep user workspace`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::io::{Io, read_text_raising};
use crate::admin::reply::{Reply, user_json};
use crate::admin::reply::{opt, yes_no};
use crate::workspace::{Marker, RAISE_LIMIT};
use crate::{Error, Redkeep, Result, Timestamp, WorkspaceInfo};

/// Workspace commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum WorkspaceCmd {
    /// List workspace folders with piece count, size and last change.
    List {
        /// Only folders whose user does not exist.
        #[cfg_attr(feature = "cli", arg(long))]
        orphans: bool,
    },
    /// Show one user's workspace document and summary.
    Show {
        /// Id, email or username.
        user: String,
    },
    /// Give a user the folder that bears their number but has no owner marker (a folder of
    /// an older build, or copied in by hand) or a malformed one, when `check` cannot tell it
    /// is theirs: it writes the marker, and the folder is served to them from then on. Only for a folder
    /// known to be theirs: one of an earlier account with the same number would hand them
    /// that account's files.
    Bind {
        /// Id, email or username.
        user: String,
    },
    /// List the trash: folders of deleted users, folders a reset or restore replaced, and
    /// what each user's folder's trash holds (`users/ID/.trash/…`: removed gallery pieces,
    /// copies `check --repair` kept).
    Trash,
    /// Delete trash entries for good: the folders of one deleted user or the removed pieces
    /// of one user (`--user`; copies of their files inside `reset-…` entries, the store's
    /// safety copies and backups stay), entries older than a duration (disk space), or all.
    /// `--older-than` and `--all` delete `reset-…` entries too: the restore or reset that
    /// made one can then no longer be undone with `restore --folders`. A removed piece's
    /// number is still never given again.
    #[cfg_attr(
        feature = "cli",
        command(group(
            clap::ArgGroup::new("which")
                .required(true)
                .multiple(true)
                .args(["user", "older_than", "all"])
        ))
    )]
    PurgeTrash {
        /// Only the folders of this deleted user, or what this user's folder's trash holds
        /// (their numeric id, as `workspace trash` lists it).
        #[cfg_attr(feature = "cli", arg(long, value_parser = deleted_user_arg))]
        user: Option<u64>,
        /// Only entries moved there longer ago than this, e.g. 30d.
        #[cfg_attr(feature = "cli", arg(long, value_parser = super::common::duration_arg))]
        older_than: Option<String>,
        /// Every entry.
        #[cfg_attr(feature = "cli", arg(long, conflicts_with_all = ["user", "older_than"]))]
        #[serde(default)]
        all: bool,
    },
}

/// Gallery commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum GalleryCmd {
    /// List a user's pieces.
    List {
        /// Id, email or username.
        user: String,
    },
    /// Print one piece.
    Show {
        /// Id, email or username.
        user: String,
        /// Piece number.
        piece: u64,
    },
    /// Save a JSON file (or `-` for stdin) as the user's next piece.
    Add {
        /// Id, email or username.
        user: String,
        /// A JSON file, or `-` for stdin.
        file: String,
    },
    /// Remove one piece: it moves to the user's trash (`workspace trash` lists it,
    /// `workspace purge-trash` deletes it for good); its number is never given again.
    Remove {
        /// Id, email or username.
        user: String,
        /// Piece number.
        piece: u64,
    },
}

impl GalleryCmd {
    /// The file `gallery add` reads on the client side, if this is that command.
    pub(super) fn input_file(&self) -> Option<&str> {
        match self {
            GalleryCmd::Add { file, .. } => Some(file),
            _ => None,
        }
    }
}

/// Clap's check of `purge-trash --user`: the numeric id of a deleted user. An email or a
/// username names an account, and a deleted one has neither any more, so they are refused
/// with what to give instead (a usage error, exit 2).
#[cfg(feature = "cli")]
fn deleted_user_arg(text: &str) -> std::result::Result<u64, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not a user id; give the user's numeric id, as `redkeep workspace \
             trash` lists it (a deleted account has no email or username any more)"
        )
    })
}

fn info_json(i: &WorkspaceInfo) -> Value {
    serde_json::to_value(i).unwrap_or_default()
}

fn info_row(i: &WorkspaceInfo, email: &str) -> Vec<String> {
    vec![
        i.user_id.to_string(),
        email.to_string(),
        i.pieces.to_string(),
        opt(&i.piece_count),
        i.notes.to_string(),
        i.size_bytes.to_string(),
        opt(&i.modified),
        i.error.clone().unwrap_or_default(),
    ]
}

const INFO_HEADERS: [&str; 8] = [
    "user_id",
    "email",
    "pieces",
    "piece_count",
    "notes",
    "bytes",
    "modified",
    "error",
];

pub fn run(rk: &Redkeep, cmd: &WorkspaceCmd) -> Result<Reply> {
    match cmd {
        WorkspaceCmd::List { orphans } => {
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for i in rk.workspaces().list()? {
                let email = rk.users().get(i.user_id)?.map(|u| u.email);
                if *orphans && email.is_some() {
                    continue;
                }
                // A folder without a user is an orphan: no email to show.
                let shown = email.clone().unwrap_or_else(|| "(no user)".into());
                rows.push(info_row(&i, &shown));
                let mut j = info_json(&i);
                j["email"] = json!(email);
                json.push(j);
            }
            Ok(Reply::table(Value::Array(json), &INFO_HEADERS, rows))
        }
        WorkspaceCmd::Trash => {
            let entries = rk.workspaces().trash()?;
            let rows = entries
                .iter()
                .map(|e| {
                    vec![
                        e.name.clone(),
                        e.user.map_or_else(|| "-".into(), |u| u.to_string()),
                        opt(&e.moved_at),
                    ]
                })
                .collect();
            Ok(Reply::table(
                serde_json::to_value(&entries).unwrap_or_default(),
                &["name", "user", "moved_at"],
                rows,
            ))
        }
        WorkspaceCmd::PurgeTrash {
            user,
            older_than,
            all,
        } => {
            // Clap asks for one of them; a request built otherwise must not mean "all".
            if !*all && user.is_none() && older_than.is_none() {
                return Err(Error::invalid(
                    "purge-trash",
                    "say what to delete: --user ID, --older-than DURATION or --all",
                ));
            }
            let cutoff = older_than
                .as_deref()
                .map(|d| super::common::parse_duration("older-than", d))
                .transpose()?
                .map(|d| {
                    Timestamp(
                        rk.now()
                            .0
                            .saturating_sub(d.as_secs().try_into().unwrap_or(i64::MAX)),
                    )
                });
            // Of a user who exists, only what is in their folder's `.trash` (removed pieces,
            // repair copies): a folder entry with their id is an earlier account's.
            let live = match user {
                Some(id) => rk.users().get(*id)?.is_some(),
                None => false,
            };
            if let Some(id) = user
                && live
                && !rk
                    .workspaces()
                    .trash()?
                    .iter()
                    .any(|e| e.user == Some(*id) && e.in_user_folder())
            {
                return Err(Error::invalid(
                    "user",
                    format!(
                        "user {id} exists and has nothing in their folder's trash; purge-trash \
                         deletes the folders of deleted users (delete the account first), and \
                         removed pieces and repair copies"
                    ),
                ));
            }
            // The folders a stopped restore waits to put in place (a trash entry given
            // with `--folders`) are its users' only copy: never purged while they wait.
            let waiting = rk
                .stopped_restore()?
                .and_then(std::result::Result::ok)
                .and_then(|s| std::fs::canonicalize(s.users).ok());
            let is_waiting = |e: &crate::workspace::TrashEntry| {
                waiting.is_some() && std::fs::canonicalize(&e.path).ok() == waiting
            };
            let picked = |e: &crate::workspace::TrashEntry| {
                *all || (user.is_none_or(|u| e.user == Some(u) && (!live || e.in_user_folder()))
                    && cutoff.is_none_or(|c| e.moved_at.is_some_and(|t| t < c)))
            };
            let kept: Vec<String> = rk
                .workspaces()
                .trash()?
                .into_iter()
                .filter(|e| picked(e) && is_waiting(e))
                .map(|e| e.name)
                .collect();
            let purged = rk
                .workspaces()
                .purge_trash(&|e| picked(e) && !is_waiting(e))?;
            let mut lines = vec![format!(
                "deleted {} trash entr{} for good",
                purged.len(),
                if purged.len() == 1 { "y" } else { "ies" }
            )];
            lines.extend(purged.iter().map(|e| format!("  {}", e.name)));
            lines.extend(kept.iter().map(|name| {
                format!(
                    "kept {name}: a restore stopped part way waits to put those folders in \
                     place; `redkeep check --repair` finishes it"
                )
            }));
            if purged.iter().any(|e| e.name.starts_with("reset-")) {
                lines.push(
                    "the folders a restore or reset replaced (reset-…) are gone: `restore \
                     --folders` can no longer bring them back"
                        .into(),
                );
            }
            Ok(Reply::text(
                json!({
                    "purged": purged.iter().map(|e| &e.name).collect::<Vec<_>>(),
                    "kept": kept,
                }),
                lines,
            ))
        }
        WorkspaceCmd::Bind { user } => {
            let u = rk.users().find(user)?;
            let dir = rk.workspaces().dir(u.id);
            let owner = crate::workspace::FolderOwner {
                uid: u.uid.0,
                since: u.created_at.0,
            };
            let (line, bound) = match rk.workspaces().owner_marker(u.id)? {
                Marker::Of(m) if m == owner => (
                    format!(
                        "{} is user {}'s already; nothing changed",
                        dir.display(),
                        u.id
                    ),
                    false,
                ),
                Marker::Of(_) => {
                    return Err(Error::denied(format!(
                        "{} has an owner marker naming another account, so it is not user \
                         {}'s: it was left by an earlier account with that number; `redkeep \
                         check --repair` moves it to the trash",
                        dir.display(),
                        u.id
                    )));
                }
                Marker::Missing if !rk.workspaces().exists(u.id) => {
                    return Err(Error::not_found(format!(
                        "a folder of user {} ({} is not there)",
                        u.id,
                        dir.display()
                    )));
                }
                was @ (Marker::Missing | Marker::Malformed) => {
                    // (Audited, as `workspace_bound`.)
                    rk.bind_workspace(u.id, owner)?;
                    let marker = if was == Marker::Malformed {
                        "its malformed owner marker is replaced"
                    } else {
                        "its owner marker is written"
                    };
                    (
                        format!(
                            "bound {} to user {} ({}): {marker}, and it is served to them",
                            dir.display(),
                            u.id,
                            u.email
                        ),
                        true,
                    )
                }
            };
            // `bound`: whether this run bound it (false when it was the user's already).
            Ok(Reply::text(
                json!({"user_id": u.id, "path": dir, "bound": bound}),
                vec![line],
            ))
        }
        WorkspaceCmd::Show { user } => {
            let u = rk.users().find(user)?;
            let info = rk.workspaces().info(u.id)?;
            let doc = rk.workspaces().read(u.id)?;
            let doc_json = serde_json::to_value(&doc).unwrap_or_default();
            let mut lines = vec![format!("workspace of user {} ({})", u.id, u.email)];
            let path = rk.workspaces().dir(u.id);
            let doc_file = path.join(crate::workspace::WORKSPACE_FILE);
            lines.push(format!(
                "path:        {}{}",
                path.display(),
                if !info.exists {
                    " (no folder yet: made at the user's first write)".to_string()
                } else if std::fs::symlink_metadata(&doc_file).is_err() {
                    format!(
                        " (no {}: the document below is an empty one)",
                        crate::workspace::WORKSPACE_FILE
                    )
                } else {
                    String::new()
                }
            ));
            lines.push(format!(
                "pieces:      {} (piece_count {})",
                info.pieces, doc.piece_count
            ));
            lines.push(format!("notes:       {}", doc.note_count()));
            lines.push(format!("bytes:       {}", info.size_bytes));
            lines.push(format!("modified:    {}", opt(&info.modified)));
            lines.extend(crate::admin::reply::pretty_json_lines(&doc_json));
            let mut json = info_json(&info);
            json["email"] = json!(u.email);
            json["path"] = json!(path);
            json["workspace"] = doc_json;
            Ok(Reply::text(json, lines))
        }
    }
}

/// `redkeep user workspace USER`: the user summary and their workspace.
pub fn user_workspace(rk: &Redkeep, who: &str) -> Result<Reply> {
    let u = rk.users().find(who)?;
    let info = rk.workspaces().info(u.id)?;
    let doc = rk.workspaces().read(u.id)?;
    let notes = doc.notes.clone();
    let lines = vec![
        format!("user {} {} ({})", u.id, u.email, u.name),
        format!(
            "active: {}  admin: {}",
            yes_no(u.is_active),
            yes_no(u.is_admin)
        ),
        format!("pieces: {}  notes: {}", info.pieces, doc.note_count()),
        format!(
            "bytes: {}  modified: {}",
            info.size_bytes,
            opt(&info.modified)
        ),
        format!("notes: {notes}"),
    ];
    let json = json!({
        "user": user_json(&u),
        "workspace": {
            "path": rk.workspaces().dir(u.id),
            "notes": notes,
            "piece_count": doc.piece_count,
            "pieces": info.pieces,
            "size_bytes": info.size_bytes,
            "modified": info.modified,
        }
    });
    Ok(Reply::text(json, lines))
}

pub fn gallery(rk: &Redkeep, cmd: &GalleryCmd, io: Io<'_>) -> Result<Reply> {
    match cmd {
        GalleryCmd::List { user } => {
            let u = rk.users().find(user)?;
            let pieces = rk.workspaces().list_pieces(u.id)?;
            let rows = pieces
                .iter()
                .map(|p| {
                    vec![
                        p.piece.to_string(),
                        p.size_bytes.to_string(),
                        opt(&p.modified),
                    ]
                })
                .collect();
            let json = serde_json::to_value(&pieces).unwrap_or_default();
            Ok(Reply::table(json, &["piece", "bytes", "modified"], rows))
        }
        GalleryCmd::Show { user, piece } => {
            let u = rk.users().find(user)?;
            let v = rk.workspaces().load_piece(u.id, *piece)?;
            let lines = crate::admin::reply::pretty_json_lines(&v);
            Ok(Reply::text(v, lines))
        }
        GalleryCmd::Add { user, .. } => {
            let u = rk.users().find(user)?;
            // The limit this store's workspace files have (the application's, through its
            // admin socket; `--max-doc-bytes` here).
            let limit = rk.workspaces().max_bytes();
            let body = read_text_raising(io.input, "the piece", limit, RAISE_LIMIT)?;
            if body.trim().is_empty() {
                return Err(Error::invalid(
                    "piece",
                    "the input is empty; give a JSON file or pipe JSON to `-`",
                ));
            }
            let n = rk.workspaces().save_piece(u.id, body.as_bytes())?;
            let path = rk.workspaces().piece_path(u.id, n);
            Ok(Reply::text(
                json!({"user_id": u.id, "piece": n, "path": path.display().to_string()}),
                vec![format!(
                    "saved piece {n} of user {} at {}",
                    u.id,
                    path.display()
                )],
            ))
        }
        GalleryCmd::Remove { user, piece } => {
            let u = rk.users().find(user)?;
            rk.workspaces().delete_piece(u.id, *piece)?;
            Ok(Reply::text(
                json!({"user_id": u.id, "piece": piece, "removed": true}),
                vec![format!(
                    "removed piece {piece} of user {0}: it waits in their trash until \
                     `redkeep workspace purge-trash --user {0}` deletes it for good",
                    u.id
                )],
            ))
        }
    }
}
