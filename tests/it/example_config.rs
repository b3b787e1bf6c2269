//! Every example configuration shipped in the repository parses: the files in `examples/`, and
//! every ```toml block of README.md and docs/*.md.

use std::path::{Path, PathBuf};

#[test]
fn example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let cfg = backupd::config::Config::load(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!cfg.jobs.is_empty(), "{} defines no job", p.display());
            n += 1;
        }
    }
    assert!(
        n >= 1,
        "no example configuration found in {}",
        dir.display()
    );
}

/// The marker that makes the ```toml block after it a fragment: the nearest non-blank line
/// before the opening fence is exactly this.
const FRAGMENT: &str = "<!-- fragment -->";

/// A ```toml block of a Markdown file.
struct TomlBlock {
    /// The line (1-based) of its opening fence.
    line: usize,
    text: String,
    fragment: bool,
}

/// The ```toml blocks of a Markdown text. Fences of other languages are skipped whole, so a
/// "```toml" line inside them is not mistaken for one.
fn toml_blocks(markdown: &str) -> Vec<TomlBlock> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, bool, bool, String)> = None; // (line, is toml, fragment, text)
    let mut last_text_line = "";
    for (i, line) in markdown.lines().enumerate() {
        let t = line.trim();
        match &mut open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    let is_toml = info.trim() == "toml";
                    let fragment = last_text_line == FRAGMENT;
                    open = Some((i + 1, is_toml, fragment, String::new()));
                } else if !t.is_empty() {
                    last_text_line = t;
                }
            }
            Some((start, is_toml, fragment, text)) => {
                if t == "```" {
                    if *is_toml {
                        blocks.push(TomlBlock {
                            line: *start,
                            text: std::mem::take(text),
                            fragment: *fragment,
                        });
                    }
                    open = None;
                    last_text_line = "";
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    assert!(
        open.is_none(),
        "a code block opened at line {} is never closed",
        open.map_or(0, |o| o.0)
    );
    blocks
}

/// README.md and docs/*.md.
fn documentation_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).expect("the docs/ folder") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files.sort();
    files
}

/// Every ```toml block in the documentation is a complete configuration that
/// `Config::load` accepts — unless it is marked `<!-- fragment -->`, then it only has to be
/// TOML. Fragments are kept few: an example people copy should be one that works.
#[test]
fn documented_toml_examples_are_valid_configurations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let (mut complete, mut fragments) = (0, Vec::new());
    let mut failures = Vec::new();
    for f in documentation_files(root) {
        let name = f.strip_prefix(root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        for b in toml_blocks(&text) {
            let at = format!("{name}:{}", b.line);
            if b.fragment {
                if let Err(e) = toml::from_str::<toml::Value>(&b.text) {
                    failures.push(format!("{at}: the fragment is not TOML: {e}"));
                }
                fragments.push(at);
                continue;
            }
            // Named after the block, so that the error's file:line:column leads to it.
            let file = tmp.path().join(format!(
                "{}-line-{}.toml",
                name.replace(['/', '\\'], "_"),
                b.line
            ));
            std::fs::write(&file, &b.text).unwrap();
            match backupd::config::Config::load(&file) {
                Ok(_) => complete += 1,
                Err(e) => failures.push(format!(
                    "{at}: the ```toml block is not a valid configuration (mark it `{FRAGMENT}` if it is meant as a fragment): {e}"
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} documented example(s) fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        complete >= 10,
        "only {complete} complete ```toml examples found in README.md and docs/*.md: is the block detection broken?"
    );
    assert!(
        fragments.len() <= 3,
        "{} fragments ({}): make examples complete configurations instead",
        fragments.len(),
        fragments.join(", ")
    );
}

#[test]
fn toml_blocks_are_found_and_fragments_marked() {
    let md = "text\n\n```toml\na = 1\n```\n\n<!-- fragment -->\n\n```toml\nb = 2\n```\n```sh\n```toml\n```\n";
    let b = toml_blocks(md);
    assert_eq!(b.len(), 2);
    assert_eq!(
        (b[0].line, b[0].text.as_str(), b[0].fragment),
        (3, "a = 1\n", false)
    );
    assert_eq!(
        (b[1].line, b[1].text.as_str(), b[1].fragment),
        (9, "b = 2\n", true)
    );
}
