//! The Dockerfile's invariants, checked by reading it (no Docker engine runs in CI):
//! the module is loaded exactly once by the official Redis 8 image, whose entrypoint
//! appends `--loadmodule` for every `*.so` in `/usr/local/lib/redis/modules/`; the
//! dependencies are built from the manifests before the sources are copied; the build
//! has what it needs (libclang for bindgen, every workspace member's manifest, a
//! placeholder for every declared bench).

use std::collections::BTreeMap;
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
    bench_targets(manifest)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// The files of the `[[bench]]` targets of a manifest: `path`, else `benches/<name>.rs`.
fn bench_paths(manifest: &str) -> Vec<String> {
    bench_targets(manifest)
        .into_iter()
        .map(|(name, path)| path.unwrap_or_else(|| format!("benches/{name}.rs")))
        .collect()
}

/// `(name, path)` of each `[[bench]]` target of a manifest.
fn bench_targets(manifest: &str) -> Vec<(String, Option<String>)> {
    let mut targets: Vec<(String, Option<String>)> = Vec::new();
    let mut in_bench = false;
    let value = |rest: &str| {
        rest.trim_start_matches([' ', '='])
            .trim_matches('"')
            .to_owned()
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
            if in_bench {
                targets.push((String::new(), None));
            }
        } else if !in_bench {
            continue;
        } else if let Some(target) = targets.last_mut() {
            if let Some(rest) = line.strip_prefix("name") {
                target.0 = value(rest);
            } else if let Some(rest) = line.strip_prefix("path") {
                target.1 = Some(value(rest));
            }
        }
    }
    targets
}

/// The dependency build creates an empty file for every declared bench (cargo refuses
/// a workspace whose root package declares a bench with no file), in directories it
/// creates first.
fn check_bench_placeholders(dockerfile: &str, manifest: &str) -> Result<(), String> {
    let list = dockerfile
        .lines()
        .find_map(|line| line.split_once("for bench in "))
        .and_then(|(_, rest)| rest.split_once(';'))
        .map(|(files, _)| files.split_whitespace().collect::<Vec<_>>())
        .ok_or("no `for bench in ...;` loop creating the bench files")?;
    let paths = bench_paths(manifest);
    if list != paths {
        return Err(format!(
            "placeholders {list:?} vs [[bench]] files {paths:?}"
        ));
    }
    if !dockerfile.contains("touch \"$bench\"") {
        return Err("the loop does not `touch \"$bench\"`".to_owned());
    }
    let made: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.split_once("mkdir -p "))
        .flat_map(|(_, rest)| rest.trim_end_matches(['\\', ' ']).split_whitespace())
        .collect();
    for path in &paths {
        let dir = Path::new(path)
            .parent()
            .and_then(Path::to_str)
            .unwrap_or("");
        let made_here = |m: &&str| *m == dir || m.starts_with(&format!("{dir}/"));
        if !made.iter().any(made_here) {
            return Err(format!("no `mkdir -p {dir}` before {path}: made {made:?}"));
        }
    }
    Ok(())
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
    let manifest = workspace_manifest();
    assert_eq!(
        bench_names(&manifest),
        ["core", "server", "client", "http", "http_instructions"]
    );
    assert_eq!(
        bench_paths(&manifest),
        [
            "benches/core.rs",
            "benches/server/main.rs",
            "benches/client.rs",
            "benches/http.rs",
            "benches/http_instructions.rs"
        ]
    );
    check_bench_placeholders(&dockerfile(), &manifest).unwrap();
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

// ---------------------------------------------------------------------------------------
// examples/Dockerfile.api and docker-compose.yml (neither is run in CI either).

fn read(path: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The Debian release named in a stage's `FROM`.
fn debian_release(stage: &[Instruction]) -> &'static str {
    let from = &stage[0].args;
    ["bookworm", "trixie", "bullseye"]
        .into_iter()
        .find(|name| from.contains(name))
        .unwrap_or_else(|| panic!("no Debian release named in FROM {from}"))
}

#[test]
fn the_api_image_builds_the_example_from_every_manifest_first() {
    let dockerfile = read("examples/Dockerfile.api");
    let members = workspace_members(&workspace_manifest());
    check_manifests_first(&dockerfile, &members).unwrap();
    let stages = stages(&dockerfile);
    let [builder, runtime] = stages.as_slice() else {
        panic!("two stages expected: {stages:?}");
    };
    let builds: Vec<&str> = builder
        .iter()
        .filter(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(builds.len(), 2, "dependencies, then sources: {builds:?}");
    for build in &builds {
        assert!(
            build.contains("cargo build --release --locked --example axum_api"),
            "{build}"
        );
    }
    // Every declared bench has a placeholder, or cargo refuses the workspace.
    check_bench_placeholders(&dockerfile, &workspace_manifest()).unwrap();
    // The binary links against the builder's glibc.
    assert_eq!(debian_release(builder), debian_release(runtime));
    let (from, sources, destination) = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| copy_parts(&i.args))
        .find(|(from, _, _)| from.is_some())
        .expect("the runtime copies from the builder");
    assert_eq!(from.as_deref(), Some("builder"));
    assert_eq!(sources, ["/src/target/release/examples/axum_api"]);
    let command: Vec<String> = runtime
        .iter()
        .filter(|i| i.keyword == "CMD")
        .flat_map(|i| words(&i.args))
        .collect();
    assert_eq!(
        Some(destination.as_str()),
        command
            .first()
            .map(|program| format!("/usr/local/bin/{program}"))
            .as_deref(),
        "the command runs the copied binary"
    );
    // The example stops gracefully on Ctrl-C only; as PID 1 it ignores SIGTERM.
    let example = read("examples/axum_api.rs");
    if example.contains("ctrl_c") && !example.contains("SignalKind::terminate") {
        let stop: Vec<&str> = runtime
            .iter()
            .filter(|i| i.keyword == "STOPSIGNAL")
            .map(|i| i.args.as_str())
            .collect();
        assert_eq!(
            stop,
            ["SIGINT"],
            "docker stop must send what the example handles"
        );
    }
    let user = runtime.iter().rfind(|i| i.keyword == "USER");
    assert!(
        user.is_some_and(|u| !u.args.starts_with('0') && !u.args.starts_with("root")),
        "the API runs unprivileged: {user:?}"
    );
}

/// The services of a compose file written in the plain block style used here: each
/// service's name and its lines (indentation kept, comments too).
fn compose_services(compose: &str) -> BTreeMap<String, Vec<String>> {
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    for line in compose.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_services = line.trim_end() == "services:";
            current = None;
        } else if in_services
            && line.starts_with("  ")
            && !line.starts_with("   ")
            && !line.trim_start().starts_with('#')
        {
            let name = line.trim().trim_end_matches(':').to_owned();
            services.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(name) = &current {
            services.get_mut(name).unwrap().push(line.to_owned());
        }
    }
    services
}

/// The value of the first `key: value` line of a block (quotes removed).
fn compose_value<'a>(block: &'a [String], key: &str) -> Option<&'a str> {
    block.iter().find_map(|line| {
        let (k, v) = line.trim().split_once(':')?;
        (k == key).then(|| unquote(v.trim()))
    })
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value)
}

/// The `environment:` map of a service; with `commented`, also `# KEY: value` lines.
fn compose_environment(block: &[String], commented: bool) -> Vec<(String, String)> {
    let start = block
        .iter()
        .position(|line| line.trim() == "environment:")
        .expect("an environment: map");
    let indent = |line: &str| line.len() - line.trim_start().len();
    let own = indent(&block[start]);
    block[start + 1..]
        .iter()
        .take_while(|line| line.trim().is_empty() || indent(line) > own)
        .filter_map(|line| {
            let line = line.trim();
            let line = match line.strip_prefix("# ") {
                Some(rest) if commented => rest,
                Some(_) => return None,
                None => line,
            };
            let (key, value) = line.split_once(": ")?;
            let is_key = key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_key.then(|| (key.to_owned(), unquote(value.trim()).to_owned()))
        })
        .collect()
}

/// The `- "host:container"` entries under `key:` (ports, volumes).
fn compose_list(block: &[String], key: &str) -> Vec<String> {
    let Some(start) = block
        .iter()
        .position(|line| line.trim() == format!("{key}:"))
    else {
        return Vec::new();
    };
    block[start + 1..]
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.starts_with('#'))
        .take_while(|line| line.starts_with("- "))
        .map(|line| unquote(line.trim_start_matches("- ")).to_owned())
        .collect()
}

fn compose() -> BTreeMap<String, Vec<String>> {
    compose_services(&read("docker-compose.yml"))
}

#[test]
fn compose_builds_redis_with_the_module_and_waits_until_it_is_loaded() {
    let services = compose();
    let redis = &services["redis"];
    assert_eq!(compose_value(redis, "context"), Some("."));
    assert_eq!(compose_value(redis, "dockerfile"), Some("Dockerfile"));
    // The image's command is what loads the module exactly once (checked above).
    assert_eq!(
        compose_value(redis, "command"),
        None,
        "keep the image's command"
    );
    // Healthy means the module answers, not merely Redis.
    let module_name = read("module/src/lib.rs")
        .split("name: \"")
        .nth(1)
        .and_then(|rest| rest.split_once('"'))
        .map(|(name, _)| name.to_owned())
        .expect("the module's name in redis_module!");
    let test = compose_value(redis, "test").expect("a healthcheck test");
    assert!(
        test.contains("MODULE LIST") && test.contains(&format!("grep -qx {module_name}")),
        "{test}"
    );

    let api = &services["api"];
    assert_eq!(
        compose_value(api, "dockerfile"),
        Some("examples/Dockerfile.api")
    );
    let depends = api
        .iter()
        .skip_while(|line| line.trim() != "depends_on:")
        .take(3)
        .map(|line| line.trim())
        .collect::<Vec<_>>();
    assert_eq!(
        depends,
        ["depends_on:", "redis:", "condition: service_healthy"]
    );
    assert!(
        compose_value(api, "test").is_some(),
        "the API has a healthcheck"
    );
}

#[test]
fn compose_points_the_api_at_the_redis_service_and_publishes_its_port() {
    let services = compose();
    let api = &services["api"];
    let environment: BTreeMap<String, String> =
        compose_environment(api, false).into_iter().collect();
    let redis_url = &environment["REDIS_URL"];
    let host = redis_url
        .strip_prefix("redis://")
        .and_then(|rest| rest.split(':').next())
        .expect("redis://host:port");
    assert!(
        services.contains_key(host),
        "{redis_url}: no service {host}"
    );
    assert!(
        compose_list(&services[host], "ports")
            .iter()
            .any(|port| port.ends_with(&format!(":{}", redis_url.rsplit(':').next().unwrap()))),
        "the Redis port of {redis_url} is the one the service listens on"
    );

    let listen = &environment["LISTEN"];
    assert!(
        listen.starts_with("0.0.0.0:"),
        "reachable from outside: {listen}"
    );
    let port = listen.rsplit(':').next().unwrap();
    let ports = compose_list(api, "ports");
    assert!(
        ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
        "{ports:?} publishes {listen}"
    );
    for published in compose_list(api, "ports")
        .iter()
        .chain(&compose_list(&services["redis"], "ports"))
    {
        assert!(
            published.starts_with("127.0.0.1:"),
            "no password: {published}"
        );
    }

    // The configuration the API reads is the file mounted from the host.
    let config = &environment["REDLIMIT_CONFIG"];
    let volumes = compose_list(api, "volumes");
    assert!(
        volumes.iter().any(
            |v| v.starts_with("./examples/axum_api.toml:") && v.contains(&format!(":{config}"))
        ),
        "{volumes:?} mounts {config}"
    );
    // The Prometheus scrape target is the API service on that port.
    let prometheus = read("deploy/prometheus/prometheus.yml");
    assert!(
        prometheus.contains(&format!("\"api:{port}\"")),
        "{prometheus}"
    );
}

#[test]
fn compose_mounts_files_that_exist_and_grafana_finds_the_dashboard() {
    let services = compose();
    for (name, block) in &services {
        for volume in compose_list(block, "volumes") {
            if let Some(source) = volume.strip_prefix("./") {
                let source = source.split(':').next().unwrap();
                let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}, which does not exist"
                );
            }
        }
    }
    let grafana = compose_list(&services["grafana"], "volumes");
    let dashboard = grafana
        .iter()
        .find(|v| v.starts_with("./deploy/grafana/redlimit.json:"))
        .expect("the dashboard is mounted");
    let mounted_dir = dashboard
        .split(':')
        .nth(1)
        .and_then(|target| target.rsplit_once('/'))
        .map(|(dir, _)| dir)
        .unwrap();
    let provider = read("deploy/grafana/provisioning/dashboards/redlimit.yml");
    assert!(
        provider.contains(&format!("path: {mounted_dir}\n")),
        "the provider reads {mounted_dir}: {provider}"
    );
    assert!(
        grafana
            .iter()
            .any(|v| v.starts_with("./deploy/grafana/provisioning:/etc/grafana/provisioning")),
        "{grafana:?}"
    );
    let datasource = read("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert!(
        datasource.contains("url: http://prometheus:9090"),
        "{datasource}"
    );
    assert!(services.contains_key("prometheus"));
}

#[test]
fn every_redlimit_override_in_compose_applies_to_the_example_configuration() {
    use redlimit::http::Config;
    let services = compose();
    // The commented-out suggestions too: a user uncommenting one must not break start.
    let overrides: Vec<(String, String)> = compose_environment(&services["api"], true)
        .into_iter()
        .filter(|(key, _)| key.starts_with("REDLIMIT__"))
        .collect();
    assert!(overrides.len() >= 5, "{overrides:?}");
    for (key, value) in &overrides {
        // SAFETY: nextest runs each test in its own process, and no other test of this
        // file reads the environment.
        unsafe { std::env::set_var(key, value) };
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/axum_api.toml");
    let loaded = Config::load(&path).and_then(|config| config.compile().map(|_| config));
    for (key, _) in &overrides {
        // SAFETY: as above.
        unsafe { std::env::remove_var(key) };
    }
    if let Err(error) = loaded {
        panic!("{overrides:?}: {error}");
    }
}

#[test]
fn the_compose_parser_reads_services_values_and_lists() {
    let text = "name: x\nservices:\n  a:\n    image: i\n    environment:\n      K_1: \"v\"\n      # K_2: w\n    ports:\n      - \"1:2\"\n  b:\n    image: j\nvolumes:\n  data:\n";
    let services = compose_services(text);
    assert_eq!(services.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(compose_value(&services["a"], "image"), Some("i"));
    assert_eq!(compose_value(&services["b"], "image"), Some("j"));
    assert_eq!(
        compose_environment(&services["a"], false),
        [("K_1".to_owned(), "v".to_owned())]
    );
    assert_eq!(compose_environment(&services["a"], true).len(), 2);
    assert_eq!(compose_list(&services["a"], "ports"), ["1:2"]);
}
