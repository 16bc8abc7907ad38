//! The Dockerfile's invariants, checked by reading it (no Docker engine runs in CI):
//! the module is loaded exactly once by the official Redis 8 image, whose entrypoint
//! appends `--loadmodule` for every `*.so` in `/usr/local/lib/redis/modules/`; the
//! dependencies are built from the manifests before the sources are copied; the build
//! has what it needs (libclang for bindgen, every workspace member's manifest, a
//! placeholder for every declared bench).

use std::fs;
use std::path::Path;

/// Where the official Redis 8 image's `docker-entrypoint.sh` loads every `*.so` from.
const AUTOLOAD_DIR: &str = "/usr/local/lib/redis/modules/";

/// One instruction, continuation lines joined and comments dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of a Dockerfile, grouped by stage (`FROM` starts one).
fn stages(dockerfile: &str) -> Vec<Vec<Instruction>> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for line in logical {
        let (keyword, args) = line.split_once(' ').unwrap_or((&line, ""));
        let instruction = Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        };
        if instruction.keyword == "FROM" || stages.is_empty() {
            stages.push(Vec::new());
        }
        stages.last_mut().unwrap().push(instruction);
    }
    stages
}

/// The words of an exec-form (`["a", "b"]`) or shell-form instruction argument.
fn words(args: &str) -> Vec<String> {
    match args.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(list) => list
            .split(',')
            .map(|word| word.trim().trim_matches('"').to_owned())
            .collect(),
        None => args.split_whitespace().map(str::to_owned).collect(),
    }
}

/// `COPY [--from=...] <sources...> <destination>`: (from, sources, destination).
fn copy_parts(args: &str) -> (Option<String>, Vec<String>, String) {
    let mut from = None;
    let mut paths = Vec::new();
    for word in words(args) {
        if let Some(stage) = word.strip_prefix("--from=") {
            from = Some(stage.to_owned());
        } else if !word.starts_with("--") {
            paths.push(word);
        }
    }
    let destination = paths.pop().unwrap_or_default();
    (from, paths, destination)
}

fn dockerfile() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .expect("Dockerfile at the repository root")
}

/// Where the runtime stage puts the module, how many times the command loads it, and
/// whether the entrypoint will load it too; `Err` when it would load twice or never.
fn check_loaded_once(dockerfile: &str) -> Result<(), String> {
    let stages = stages(dockerfile);
    let runtime = stages.last().ok_or("no stage")?;
    let placed: Vec<String> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| copy_parts(&i.args))
        .filter(|(_, sources, _)| sources.iter().any(|s| s.ends_with("libredlimit.so")))
        .map(|(_, _, destination)| destination)
        .collect();
    let [module] = placed.as_slice() else {
        return Err(format!(
            "the runtime stage should copy libredlimit.so once: {placed:?}"
        ));
    };
    let autoloaded = module.starts_with(AUTOLOAD_DIR);
    let command: Vec<String> = runtime
        .iter()
        .filter(|i| i.keyword == "CMD" || i.keyword == "ENTRYPOINT")
        .flat_map(|i| words(&i.args))
        .collect();
    let loads: Vec<&String> = command
        .windows(2)
        .filter(|pair| pair[0] == "--loadmodule")
        .map(|pair| &pair[1])
        .collect();
    match (autoloaded, loads.as_slice()) {
        (true, []) => Ok(()),
        (true, _) => Err(format!(
            "{module} is under {AUTOLOAD_DIR}, which the Redis 8 entrypoint loads, and the \
             command loads {loads:?} too: the module would load twice"
        )),
        (false, [loaded]) if *loaded == module => Ok(()),
        (false, _) => Err(format!(
            "{module} is outside {AUTOLOAD_DIR}, so the command must load it exactly once; \
             it loads {loads:?}"
        )),
    }
}

/// The builder stage copies the root manifest, the lock file and every member's
/// manifest, and builds, before copying any source.
fn check_manifests_first(dockerfile: &str, members: &[String]) -> Result<(), String> {
    let stages = stages(dockerfile);
    let builder = stages
        .iter()
        .find(|stage| {
            stage
                .iter()
                .any(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        })
        .ok_or("no stage runs cargo build")?;
    let mut manifests = Vec::new();
    for instruction in builder {
        match instruction.keyword.as_str() {
            "COPY" => {
                let (_, sources, _) = copy_parts(&instruction.args);
                for source in sources {
                    let file = source.rsplit('/').next().unwrap_or(&source);
                    if file == "Cargo.toml" || file == "Cargo.lock" {
                        manifests.push(source);
                    } else {
                        return Err(format!(
                            "{source} is copied before the dependencies are built"
                        ));
                    }
                }
            }
            "RUN" if instruction.args.contains("cargo build") => break,
            _ => {}
        }
    }
    let expected = ["Cargo.toml".to_owned(), "Cargo.lock".to_owned()]
        .into_iter()
        .chain(members.iter().map(|member| format!("{member}/Cargo.toml")));
    let missing: Vec<String> = expected.filter(|m| !manifests.contains(m)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "not copied before the dependency build: {missing:?} (copied: {manifests:?})"
        ))
    }
}

/// The `members = [...]` of the workspace manifest.
fn workspace_members(manifest: &str) -> Vec<String> {
    let line = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .expect("a members line");
    let list = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'));
    let (list, _) = list.expect("members = [...] on one line");
    list.split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .filter(|member| !member.is_empty())
        .collect()
}

/// The names of the `[[bench]]` targets of a manifest.
fn bench_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(value) = line.strip_prefix("name") {
            names.push(
                value
                    .trim_start_matches([' ', '='])
                    .trim_matches('"')
                    .to_owned(),
            );
        }
    }
    names
}

fn workspace_manifest() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap()
}

#[test]
fn the_module_is_loaded_exactly_once() {
    check_loaded_once(&dockerfile()).unwrap();
}

#[test]
fn the_dependencies_are_built_from_every_members_manifest_before_the_sources() {
    let members = workspace_members(&workspace_manifest());
    assert_eq!(members, ["core", "module", "client", "test-support"]);
    check_manifests_first(&dockerfile(), &members).unwrap();
}

#[test]
fn every_declared_bench_has_a_placeholder_for_the_dependency_build() {
    // cargo refuses a workspace whose root package declares a bench with no file.
    let dockerfile = dockerfile();
    let benches = bench_names(&workspace_manifest());
    assert_eq!(benches, ["core", "server", "client", "http"]);
    let list = dockerfile
        .lines()
        .find_map(|line| line.split_once("for bench in "))
        .and_then(|(_, rest)| rest.split_once(';'))
        .map(|(names, _)| names.split_whitespace().collect::<Vec<_>>())
        .expect("a `for bench in ...;` loop creating benches/<name>.rs");
    assert_eq!(list, benches, "placeholders vs [[bench]] names");
    assert!(dockerfile.contains("benches/$bench.rs"), "{dockerfile}");
}

#[test]
fn the_builder_has_libclang_and_builds_the_release_module_for_the_runtime_debian() {
    let stages = stages(&dockerfile());
    let [builder, runtime] = stages.as_slice() else {
        panic!("two stages expected: {stages:?}");
    };
    let runs: Vec<&str> = builder
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    let clang = runs.iter().position(|run| run.contains("libclang-dev"));
    let build = runs
        .iter()
        .position(|run| run.contains("cargo build --release --locked -p redlimit-module"));
    assert!(
        matches!((clang, build), (Some(c), Some(b)) if c < b),
        "libclang-dev (bindgen) must be installed before the build: {runs:?}"
    );
    // The module links against the builder's glibc: same Debian release at run time.
    let release = |stage: &[Instruction]| {
        let from = &stage[0].args;
        ["bookworm", "trixie", "bullseye"]
            .into_iter()
            .find(|name| from.contains(name))
            .unwrap_or_else(|| panic!("no Debian release named in FROM {from}"))
    };
    assert_eq!(release(builder), release(runtime));
    let copied = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| copy_parts(&i.args))
        .find(|(from, _, _)| from.is_some())
        .expect("the runtime copies from the builder");
    assert_eq!(copied.1, ["/src/target/release/libredlimit.so"]);
}

/// The Dockerfile of before the fix, which the checks must refuse.
const DOUBLE_LOAD: &str = r#"
FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p redlimit-module

FROM redis:8.2-bookworm
COPY --from=builder /src/target/release/libredlimit.so /usr/local/lib/redis/modules/libredlimit.so
USER redis
CMD ["redis-server", "--loadmodule", "/usr/local/lib/redis/modules/libredlimit.so"]
"#;

#[test]
fn the_checks_refuse_a_double_load_and_sources_copied_first() {
    let error = check_loaded_once(DOUBLE_LOAD).unwrap_err();
    assert!(error.contains("would load twice"), "{error}");
    let members = ["core".to_owned()];
    let error = check_manifests_first(DOUBLE_LOAD, &members).unwrap_err();
    assert!(error.contains(". is copied before"), "{error}");

    // Relying on the entrypoint alone is fine; a module outside it must be loaded.
    let bare = DOUBLE_LOAD.replace(
        r#"CMD ["redis-server", "--loadmodule", "/usr/local/lib/redis/modules/libredlimit.so"]"#,
        r#"CMD ["redis-server"]"#,
    );
    assert_eq!(check_loaded_once(&bare), Ok(()));
    let never = bare.replace("/usr/local/lib/redis/modules/", "/opt/redlimit/");
    let error = check_loaded_once(&never).unwrap_err();
    assert!(error.contains("exactly once"), "{error}");
}
