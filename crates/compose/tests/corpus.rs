//! The committed corpus: every valid file loads to the expected model; every broken file fails
//! with the error its first line announces (`# expect: ...`), naming file:line:column and key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capstan_compose::model::Command;
use capstan_compose::{Options, load};

fn corpus() -> PathBuf {
    // the runner's value first: a test binary reused from a checkout elsewhere (one target
    // dir shared between clones) must still read this checkout's files
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).to_owned(),
            Into::into,
        )
        .join("tests/corpus")
}

fn options(file: &str, env: &[(&str, &str)]) -> Options {
    Options {
        files: vec![file.into()],
        environment: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        working_dir: corpus(),
        text: None,
        ..Options::default()
    }
}

#[test]
fn the_full_file_resolves_every_key() {
    let loaded = load(&options(
        "valid/full.yaml",
        &[("FROM_CALLER", "caller"), ("FROM_ENV", "arg")],
    ))
    .unwrap();
    let p = &loaded.project;
    assert_eq!(
        p.name.as_deref(),
        Some("valid"),
        "named after the directory"
    );
    assert_eq!(
        p.services.keys().collect::<Vec<_>>(),
        ["cache", "db", "web"],
        "debug is behind a profile"
    );
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("capstan-test/busybox:1"));
    assert_eq!(
        web.restart.as_deref(),
        Some("unless-stopped"),
        "from the merge key"
    );
    assert_eq!(web.labels.get("team").map(String::as_str), Some("core"));
    assert_eq!(web.entrypoint, Some(Command::Shell("/bin/sh -c".into())));
    let env: BTreeMap<&str, Option<&str>> = web
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("EMPTY", Some("")),
            ("FROM_CALLER", Some("caller")),
            ("MODE", Some("staging")),
            ("WEB_ENV", Some("1")),
        ]),
        ".env feeds interpolation; environment wins over env_file; bare names come from the caller"
    );
    assert!(web.env_file.is_empty());
    let ports: Vec<_> = web
        .ports
        .iter()
        .map(|p| {
            (
                p.host_ip.as_deref(),
                p.published.as_deref(),
                p.target,
                p.protocol.as_str(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            (Some("127.0.0.1"), Some("8080"), 80, "tcp"),
            (None, None, 90, "udp"),
            (Some("127.0.0.1"), Some("8443"), 443, "tcp")
        ]
    );
    assert_eq!(web.expose, ["3000", "3001"]);
    let vols: Vec<_> = web
        .volumes
        .iter()
        .map(|v| (v.kind.as_str(), v.target.as_str(), v.read_only))
        .collect();
    assert_eq!(
        vols,
        [
            ("volume", "/data", false),
            ("bind", "/www", true),
            ("tmpfs", "/cache", false),
            ("volume", "/logs", false)
        ]
    );
    assert_eq!(
        web.volumes[1].source.as_deref(),
        Some(corpus().join("valid/static").to_str().unwrap())
    );
    assert_eq!(web.volumes[3].volume.as_ref().unwrap().nocopy, Some(true));
    let nets = &web.networks.as_ref().unwrap().0;
    assert_eq!(nets["front"].aliases, ["www", "site"]);
    assert!(nets.contains_key("back"));
    let deps = &web.depends_on.as_ref().unwrap().0;
    assert_eq!(deps["db"].condition, "service_healthy");
    assert_eq!(deps["cache"].condition, "service_started");
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(
        hc.test,
        ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1/"]
    );
    assert_eq!((hc.interval.as_deref(), hc.retries), (Some("1s"), Some(3)));
    let deploy = web.deploy.as_ref().unwrap();
    assert_eq!(deploy.replicas, Some(3));
    let up = deploy.update_config.as_ref().unwrap();
    assert_eq!(
        (
            up.parallelism,
            up.order.as_deref(),
            up.failure_action.as_deref()
        ),
        (Some(1), Some("start-first"), Some("rollback"))
    );
    assert_eq!(up.max_failure_ratio, Some(0.1));
    assert_eq!(
        deploy.rollback_config.as_ref().unwrap().order.as_deref(),
        Some("stop-first")
    );
    let limits = deploy.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(
        (
            limits.cpus.as_deref(),
            limits.memory.as_deref(),
            limits.pids
        ),
        (Some("0.5"), Some("64M"), Some(100))
    );
    assert_eq!(
        deploy.restart_policy.as_ref().unwrap().max_attempts,
        Some(3)
    );
    assert_eq!(
        (web.read_only, web.privileged, web.init),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!(web.tmpfs, ["/run"]);
    assert_eq!(web.dns, ["1.1.1.1"]);
    assert_eq!(web.ulimits["nofile"].hard, 2048);
    assert_eq!(web.ulimits["nproc"].soft, 512);
    assert_eq!(web.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(web.extra_hosts["db.local"], "10.0.0.5");
    assert_eq!(web.logging.as_ref().unwrap().options["max-file"], "3");
    assert_eq!(web.configs.len(), 2);
    assert_eq!(web.configs[1].mode, Some(0o440));
    assert_eq!(web.secrets[0].mode, Some(0o400));
    assert_eq!(web.secrets[0].uid.as_deref(), Some("1000"));
    let db = &p.services["db"];
    assert_eq!(db.command, Some(Command::Shell("sleep 3600".into())));
    assert!(
        !db.environment.contains_key("ONLY_NAME"),
        "unset bare names are dropped"
    );
    assert_eq!(db.healthcheck.as_ref().unwrap().test, ["CMD", "true"]);
    assert_eq!(
        db.volumes[0].bind.as_ref().unwrap().create_host_path,
        Some(true)
    );
    let cache = &p.services["cache"];
    let build = cache.build.as_ref().unwrap();
    assert_eq!(
        build.context,
        corpus().join("valid/cache").to_str().unwrap()
    );
    assert_eq!(build.args["FROM_ENV"].as_deref(), Some("arg"));
    assert_eq!(build.target.as_deref(), Some("runtime"));
    assert_eq!(cache.restart.as_deref(), Some("on-failure:3"));
    assert_eq!(p.networks["back"].as_ref().unwrap().internal, Some(true));
    assert_eq!(p.volumes["logs"].as_ref().unwrap().labels["keep"], "yes");
    assert_eq!(
        p.secrets["token"].file.as_deref(),
        Some(corpus().join("valid/token.txt").to_str().unwrap())
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    // a profile brings its service in; -p names the project
    let mut opts = options("valid/full.yaml", &[]);
    opts.profiles = vec!["debug".into()];
    opts.project_name = Some("shop".into());
    let loaded = load(&opts).unwrap();
    assert!(loaded.project.services.contains_key("debug"));
    assert_eq!(loaded.project.name.as_deref(), Some("shop"));
}

#[test]
fn later_files_override_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "name: base\nservices:\n  web:\n    image: a:1\n    environment: [A=1]\n    ports: ['8080:80']\n").unwrap();
    std::fs::write(dir.path().join("override.yaml"), "services:\n  web:\n    image: a:2\n    environment: {B: '2'}\n    ports: ['8081:81']\n    mem_limit: 64m\n").unwrap();
    let mut opts = Options {
        files: vec!["compose.yaml".into(), "override.yaml".into()],
        working_dir: dir.path().to_owned(),
        text: None,
        ..Options::default()
    };
    let loaded = load(&opts).unwrap();
    let web = &loaded.project.services["web"];
    assert_eq!(web.image.as_deref(), Some("a:2"));
    assert_eq!(web.environment.len(), 2);
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.mem_limit.as_deref(), Some("64m"));
    assert_eq!(loaded.project.name.as_deref(), Some("base"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // a valid key capstan does not apply is refused naming file, line and key, never dropped
    std::fs::write(
        dir.path().join("later.yaml"),
        "services:\n  web:\n    platform: linux/amd64\n",
    )
    .unwrap();
    opts.files.push("later.yaml".into());
    let e = load(&opts).unwrap_err().to_string();
    assert!(
        e.contains("later.yaml:3:5: services.web.platform: is not applied by capstan yet"),
        "{e}"
    );
}

#[test]
fn every_broken_file_is_rejected_with_its_position() {
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus().join("broken")).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("broken/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name} has no `# expect:` line"));
        let err = load(&options(&name, &[])).expect_err(&name).to_string();
        assert!(
            err.contains(expect),
            "{name}:\n  expected: {expect}\n  got:      {err}"
        );
        checked += 1;
    }
    assert!(checked >= 10);
}
