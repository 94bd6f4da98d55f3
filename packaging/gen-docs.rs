//! Writes the man pages generated from the CLI definition (`src/cli.rs`) and
//! the shell completions into a directory, for the packages:
//!
//!     cargo run --example gen-docs -- OUT_DIR
//!
//! OUT_DIR/man8/dlm-electd.8 and one dlm-electd-COMMAND.8 per subcommand
//! (clap_mangen), OUT_DIR/completions/{dlm-electd.bash,_dlm-electd,
//! dlm-electd.fish} (clap_complete). dlm-electd.toml(5) is hand-written
//! (packaging/man/dlm-electd.toml.5): the config format is not in clap.
//! An example rather than a binary of the package: it is not installed.

use clap::CommandFactory;
use clap_complete::Shell;
use dlm_electd::cli::Cli;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Sections clap cannot produce, appended to dlm-electd(8); kept true to
/// docs/operating.md and docs/behaviour.md (command line, exit codes,
/// signals, files).
const TAIL: &str = r#".SH EXIT STATUS
.TP
.B 0
Done; on a stop, every resource was released.
.TP
.B 1
A runtime failure, or an exit with resources not released (their locks are
kept for the lock keeper or \fBdlm\-electd cleanup\fR); \fBstatus\fR: no daemon runs.
.TP
.B 78
The configuration is invalid (EX_CONFIG); each problem is printed as
\fIFILE\fB:\fILINE\fB:\fICOL\fB: \fImessage\fR naming the key.
.SH SIGNALS
.TP
.B SIGTERM, SIGINT
Release every master (its actions undone in reverse order), unlock, exit.
.TP
.B SIGHUP
Reload the configuration; a bad one is refused and nothing changes.
.TP
.B SIGUSR1
Log the status table.
.SH FILES
.TP
.I /etc/dlm-electd/dlm-electd.toml
The configuration, see \fBdlm\-electd.toml\fR(5).
.TP
.I /etc/dlm-electd/conf.d/*.toml
Drop-ins, read in name order; they may only add resources.
.TP
.I /run/dlm-electd
Runtime dir: instance lock, control socket, applied records.
.TP
.I /var/lib/dlm-electd/drain.json
The node's drain (\fBdlm\-electd drain\fR), kept across reboots.
.TP
.I /var/lib/dlm-electd/locks
Lock dir of the \fBfile\fR backend.
.TP
.I /dlm
Mount point of ocfs2_dlmfs for the \fBdlmfs\fR backend.
.SH SEE ALSO
\fBdlm\-electd.toml\fR(5), \fBsystemctl\fR(1), \fBsystemd.service\fR(5);
the README and the pages of docs/ in /usr/share/doc/dlm\-electd.
"#;

/// Writes every page and completion file under `out`; returns their paths.
fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man8");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    // One page per visible subcommand, and the main one. build() gives
    // the subcommands their display names (dlm-electd-run, ...).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::Man::new(sub.clone())
            .section("8")
            .generate_to(&man)?;
    }
    let main = clap_mangen::Man::new(cmd).section("8").generate_to(&man)?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&main)?
        .write_all(TAIL.as_bytes())?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(&man)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    // clap_complete offers hidden subcommands too: leave the internal
    // keeper out of what a user is offered.
    let full = Cli::command();
    let mut visible = clap::Command::new("dlm-electd")
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for (shell, name) in [
        (Shell::Bash, "dlm-electd.bash"),
        (Shell::Zsh, "_dlm-electd"),
        (Shell::Fish, "dlm-electd.fish"),
    ] {
        let path = comp.join(name);
        let mut f = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut visible, "dlm-electd", &mut f);
        written.push(path);
    }
    written.sort();
    Ok(written)
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen-docs OUT_DIR");
        std::process::exit(2);
    };
    match generate(Path::new(&out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
        }
        Err(e) => {
            eprintln!("gen-docs: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn pages_and_completions_cover_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let main = read(&dir.path().join("man8/dlm-electd.8"));
        assert!(main.starts_with(".ie") || main.contains(".TH dlm-electd 8"));
        assert!(main.contains(".SH EXIT STATUS") && main.contains(".SH SEE ALSO"));
        let bash = read(&dir.path().join("completions/dlm-electd.bash"));
        let fish = read(&dir.path().join("completions/dlm-electd.fish"));
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            let page = dir.path().join(format!("man8/dlm-electd-{name}.8"));
            // The keeper is internal: no page, no completion.
            assert_eq!(page.exists(), !sub.is_hide_set(), "{}", page.display());
            let roff_name = format!("dlm\\-electd\\-{}", name.replace('-', "\\-"));
            assert_eq!(main.contains(&roff_name), !sub.is_hide_set(), "{name}");
            assert_eq!(
                fish.contains(&format!("-a \"{name}\"")),
                !sub.is_hide_set(),
                "{name}"
            );
            assert_eq!(bash.contains(name), !sub.is_hide_set(), "{name}");
        }
        let release = read(&dir.path().join("man8/dlm-electd-release.8"));
        assert!(release.contains("hold\\-off"), "{release}");
        assert!(dir.path().join("completions/_dlm-electd").exists());
    }

    /// dlm-electd.toml(5) is hand-written: it must at least name every key
    /// the shipped config shows.
    #[test]
    fn config_page_names_every_key_of_the_shipped_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let page = read(&root.join("packaging/man/dlm-electd.toml.5"));
        let conf = read(&root.join("config/dlm-electd.toml"));
        let keys: Vec<&str> = conf
            .lines()
            .map(|l| l.trim_start_matches(['#', ' ']))
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
            .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        assert!(keys.len() > 15, "{keys:?}");
        for k in keys {
            assert!(
                [".B {k}\n", ".B {k}\\fR", "\\fB{k}\n", ".SS {k} = "]
                    .map(|p| p.replace("{k}", k))
                    .iter()
                    .any(|p| page.contains(p)),
                "dlm-electd.toml.5 does not describe {k}"
            );
        }
    }
}
