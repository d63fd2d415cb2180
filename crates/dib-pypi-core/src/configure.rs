//! pre-install.d: back up root's pip and uv configs and write ones that use the mirrors.
//!
//! First a plan: which files pip and uv will really read, each checked
//! (what is there, what must be created, which paths are one file) before
//! anything changes. Then one journaled transaction writes them.
//!
//! A config directory that is a symlink leading nowhere in the image
//! (`~/.config -> /nonexistent`) is as unreadable for pip and uv as it is
//! unwritable for us, so the tools are pointed at the mirrors through a
//! file they read instead: pip's other user file, or its global one; uv's
//! system file. The build goes on with a warning naming the link; it stops
//! only when no such file can be written either.
//!
//! What differs between pip and uv is in their specs (`tools`); this
//! module only iterates over them.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::certs::{CA_VAR, CLIENT_CERT_VAR};
use crate::error::{Error, Result};
use crate::hook::Report;
use crate::journal::Journal;
use crate::layout::{
    dir_mode, with_suffix, BACKUP_SUFFIX, CA_BUNDLE, CLIENT_CERT, CONFIG_JOURNAL, CONFIG_MODE,
    SECRET_MODE, TEMP_SUFFIX,
};
use crate::mounter::Mounter;
use crate::overrides::{env_warnings, image_warnings, tls_path_warnings};
use crate::rootfs::{BrokenLink, DirState, Kind, Root};
use crate::settings::Settings;
use crate::tools::{names, SystemFile, ToolSpec, TOOLS};
use crate::txn::Txn;

/// One file to replace, checked before anything changes.
#[derive(Debug)]
struct Target {
    path: PathBuf,
    tool: &'static ToolSpec,
    original: bool,
    missing: Vec<PathBuf>,
    /// Identity of the parent directory and the file name, when the
    /// parent exists: two paths with the same one are one file.
    id: Option<((u64, u64), Option<OsString>)>,
}

/// What configure will do.
#[derive(Debug, Default)]
struct Plan {
    targets: Vec<Target>,
    /// Config paths no tool can read, and for which tool.
    unreachable: Vec<(BrokenLink, &'static ToolSpec)>,
}

/// Whether [`Plan::add`] took a path.
enum Added {
    Yes,
    Unreachable(BrokenLink),
}

impl Plan {
    fn has(&self, tool: &ToolSpec) -> bool {
        self.targets.iter().any(|t| t.tool.name == tool.name)
    }

    /// Check `path` and plan its replacement; a path that is the same file
    /// as one planned already is taken as that one.
    fn add(&mut self, root: &Root, path: &Path, tool: &'static ToolSpec) -> Result<Added> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let mut missing = match root.dir_state(parent)? {
            DirState::Missing(missing) => missing,
            DirState::Unreachable(link) => return Ok(Added::Unreachable(link)),
        };
        // With `~/.pip` a symlink to `~/.config/pip`, two of our paths are
        // one file. Replacing it twice would move our own first file aside
        // as if it were the original, and undoing that would lose the real
        // original: write such a file once.
        let id = if missing.is_empty() {
            Some((
                root.dir_id(parent)?,
                path.file_name().map(OsStr::to_os_string),
            ))
        } else {
            None
        };
        if let Some(first) = self.targets.iter().find(|t| id.is_some() && t.id == id) {
            log::info!(
                "{} is the same file as {} (a symlinked directory); writing it once",
                path.display(),
                first.path.display()
            );
            return Ok(Added::Yes);
        }
        let original = match root.lstat(path)? {
            None => false,
            Some(e) if matches!(e.kind, Kind::File | Kind::Symlink) => true,
            Some(e) => {
                return Err(Error::path(
                    root.host_path(path),
                    format!("is {}, not a config file; refusing to replace it", e.kind),
                ))
            }
        };
        for leftover in [
            with_suffix(path, BACKUP_SUFFIX),
            with_suffix(path, TEMP_SUFFIX),
        ] {
            if root.lstat(&leftover)?.is_some() {
                return Err(Error::path(
                    root.host_path(&leftover),
                    "already exists (left by an interrupted build?); remove it and retry",
                ));
            }
        }
        // A directory shared by two files is created by the first one.
        missing.retain(|d| !self.targets.iter().any(|t| t.missing.contains(d)));
        self.targets.push(Target {
            path: path.to_path_buf(),
            tool,
            original,
            missing,
            id,
        });
        Ok(Added::Yes)
    }

    /// [`Plan::add`] for the file `tool` reads when its user files are out
    /// of reach: refused, saying why, when this one is too.
    fn add_instead(&mut self, root: &Root, path: &Path, tool: &'static ToolSpec) -> Result<()> {
        match self.add(root, path, tool)? {
            Added::Yes => Ok(()),
            Added::Unreachable(also) => {
                let first = self
                    .unreachable
                    .iter()
                    .find(|(_, t)| t.name == tool.name)
                    .map(|(l, _)| l.clone());
                let (at, why) = match first {
                    Some(l) => (l.link.clone(), format!("{}, and {also}", l.reason())),
                    None => (also.link.clone(), also.reason()),
                };
                Err(Error::path(
                    root.host_path(&at),
                    format!("{why}: {} cannot be pointed at the mirrors", tool.name),
                ))
            }
        }
    }

    /// One warning per unreachable path: what is wrong, and which file the
    /// tool reads instead.
    fn warnings(&self) -> Vec<String> {
        self.unreachable
            .iter()
            .map(|(link, tool)| {
                let instead: Vec<String> = self
                    .targets
                    .iter()
                    .filter(|t| t.tool.name == tool.name)
                    .map(|t| t.path.display().to_string())
                    .collect();
                format!(
                    "{link}; {} reads {} instead",
                    tool.name,
                    instead.join(" and ")
                )
            })
            .collect()
    }
}

/// The system config file `tool` reads, with whether it exists: the first
/// of its system files that is a file, else the last (which the tool reads
/// if anything is there).
fn system_file(root: &Root, tool: &ToolSpec) -> Result<Option<(PathBuf, bool)>> {
    let Some((last, before)) = tool.system_files.split_last() else {
        return Ok(None);
    };
    for path in before {
        if root.kind_following(Path::new(path))? == Some(Kind::File) {
            return Ok(Some((PathBuf::from(path), true)));
        }
    }
    let exists = root.kind_following(Path::new(last))?.is_some();
    Ok(Some((PathBuf::from(last), exists)))
}

fn plan(root: &Root, home: &Path, tools: &[&'static ToolSpec]) -> Result<Plan> {
    let mut plan = Plan::default();
    for &tool in tools {
        for path in tool.user_paths(home) {
            if let Added::Unreachable(link) = plan.add(root, &path, tool)? {
                if !plan
                    .unreachable
                    .iter()
                    .any(|(l, t)| *l == link && t.name == tool.name)
                {
                    plan.unreachable.push((link, tool));
                }
            }
        }
        let Some((system, exists)) = system_file(root, tool)? else {
            continue;
        };
        let also = exists && tool.system_file == SystemFile::AlsoWhenPresent;
        if also || !plan.has(tool) {
            plan.add_instead(root, &system, tool)?;
        }
    }
    Ok(plan)
}

/// The TLS files the settings name must be in the image: root.d puts
/// them there from the host (the chroot cannot see the host's files).
fn check_tls_files(root: &Root, settings: &Settings) -> Result<()> {
    for (wanted, path, var) in [
        (settings.mirror_ca, CA_BUNDLE, CA_VAR),
        (settings.client_cert, CLIENT_CERT, CLIENT_CERT_VAR),
    ] {
        if wanted && root.kind_following(Path::new(path))? != Some(Kind::File) {
            return Err(Error::env(
                var,
                format!(
                    "is set, but {path} is not in the image: the pypi element's root.d hook \
                     puts it there; did root.d run?"
                ),
            ));
        }
    }
    Ok(())
}

/// What [`configure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// The files written, in order.
    pub written: Vec<PathBuf>,
    /// What the user should know: config paths the tools cannot read, and
    /// what they read instead.
    pub warnings: Vec<String>,
}

/// Replace the pip and uv configs that root (home `home`) reads in the
/// image at `root` with ones that use `settings`: [`configure_tools`] with
/// the element's [`TOOLS`].
pub fn configure(
    root: &Root,
    settings: &Settings,
    home: &Path,
    mounter: &dyn Mounter,
) -> Result<Configured> {
    configure_tools(root, settings, home, mounter, TOOLS)
}

/// Replace the config files each of `tools` reads as root (home `home`)
/// in the image at `root` with ones that use `settings`. Bad state is
/// refused before anything changes; a failure half way is rolled back.
pub fn configure_tools(
    root: &Root,
    settings: &Settings,
    home: &Path,
    mounter: &dyn Mounter,
    tools: &[&'static ToolSpec],
) -> Result<Configured> {
    // A second configure (a re-run, or a second element) must not back up
    // our own files: put the originals back first.
    let previous = Journal::new(root, Path::new(CONFIG_JOURNAL));
    if previous.read()?.is_some() {
        log::info!(
            "found the configuration of an earlier run; restoring it before configuring again"
        );
        crate::undo::undo_journal(root, &previous, mounter)?;
    }
    let plan = check_tls_files(root, settings)
        .and_then(|()| plan(root, home, tools))
        .map_err(|e| {
            // Nothing of this run exists yet; an earlier run's state
            // directory goes if nothing needs it any more.
            e.and_also("removing the state directory", crate::state::teardown(root))
        })?;
    let rendered: Vec<(&str, String)> = tools
        .iter()
        .map(|t| (t.name, (t.render)(settings)))
        .collect();
    let mode = if settings.has_credentials() {
        SECRET_MODE
    } else {
        CONFIG_MODE
    };
    Txn::run(root, Path::new(CONFIG_JOURNAL), mounter, |txn| {
        for t in &plan.targets {
            txn.create_dirs(&t.missing, |d| dir_mode(d, home))?;
            if t.original {
                txn.move_aside(&t.path)?;
            }
            let contents = rendered
                .iter()
                .find(|(name, _)| *name == t.tool.name)
                .map_or("", |(_, text)| text.as_str());
            txn.write_file(&t.path, contents.as_bytes(), mode)?;
            log::debug!(
                "wrote {}{}",
                t.path.display(),
                if t.original {
                    " (original kept aside)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    })?;
    Ok(Configured {
        written: plan.targets.iter().map(|t| t.path.clone()).collect(),
        warnings: plan.warnings(),
    })
}

/// The pre-install.d hook: settings from `env`, [`configure_tools`], and
/// what the user should hear: the settings' warnings, paths the tools
/// cannot read, variables and image files that beat our files, TLS paths
/// the image lacks, a file mirror that is not there; which indexes each
/// tool uses and how it chooses among them.
pub fn pre_install<K, V>(
    root: &Path,
    env: &[(K, V)],
    home: &Path,
    mounter: &dyn Mounter,
    tools: &[&'static ToolSpec],
) -> Result<Report>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let vars = || env.iter().map(|(k, v)| (k, v));
    let settings = Settings::from_vars(vars())?;
    let root = Root::open(root)?;
    let done = configure_tools(&root, &settings, home, mounter, tools)?;
    let mut report = Report::default();
    for w in settings
        .warnings
        .iter()
        .chain(&done.warnings)
        .chain(&env_warnings(tools, vars()))
        .chain(&image_warnings(tools, &root))
        .chain(&tls_path_warnings(tools, &root, vars()))
    {
        report.warn(w.as_str());
    }
    if let Some(dir) = settings.indexes.iter().find_map(|m| m.file_path()) {
        if !root.is_dir(&dir).unwrap_or(false) {
            report.warn(format!(
                "{} does not exist in the image (no mirror mounted)",
                dir.display()
            ));
        }
    }
    let first = settings
        .indexes
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let n = settings.indexes.len();
    report.info(format!(
        "{} use {first}{} ({n} index{} in all)",
        names(tools),
        if settings.upstream {
            ", then upstream PyPI"
        } else {
            ""
        },
        if n == 1 { "" } else { "es" },
    ));
    if n > 1 {
        let choices: Vec<String> = tools
            .iter()
            .map(|t| format!("{} takes {}", t.name, (t.index_choice)(&settings)))
            .collect();
        report.info(format!("of the indexes, {}", choices.join("; ")));
    }
    for (n, index) in settings.indexes.iter().enumerate() {
        report.debug(format!("index {}: {index}", n + 1));
    }
    for path in done.written {
        report.debug(format!("wrote {}", path.display()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
