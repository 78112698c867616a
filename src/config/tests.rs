//! Configuration from INI text and environment pairs to typed values or errors.

use super::*;

fn build(ini: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut raw = RawConfig::defaults();
    raw.apply_ini(ini, Path::new("gw.ini"))?;
    raw.apply_env(env.iter().map(|(a, b)| (a.to_string(), b.to_string())))?;
    raw.build()
}

#[test]
fn defaults_need_a_binary_or_the_simulator() {
    let err = build("", &[]).unwrap_err().0;
    assert!(err.contains("lingma_bin"), "{err}");
    let cfg = build("[lingma]\nsimulator = true\n", &[]).unwrap();
    assert_eq!(cfg.port, 8080);
    assert_eq!(cfg.host.to_string(), "127.0.0.1");
    assert!(cfg.api_keys.is_empty());
}

#[test]
fn parses_sections_comments_and_lists() {
    let cfg = build(
        "; comment\n[gateway]\nport = 9000 ; inline\napi_keys = a, b ,\nmodel_aliases = gpt-4o=kmodel, claude-*=auto\n\n[lingma]\nlingma_bin = /opt/Lingma\ninstance_count=3\n",
        &[],
    )
    .unwrap();
    assert_eq!(cfg.port, 9000);
    assert_eq!(cfg.api_keys, vec!["a", "b"]);
    assert_eq!(
        cfg.model_aliases[1],
        ("claude-*".to_string(), "auto".to_string())
    );
    assert_eq!(cfg.instance_count, 3);
    assert_eq!(cfg.lingma_bin.unwrap(), PathBuf::from("/opt/Lingma"));
}

#[test]
fn bad_value_names_file_line_and_key() {
    let err = build(
        "[lingma]\nsimulator = true\n\n[gateway]\nport = eighty\n",
        &[],
    )
    .unwrap_err()
    .0;
    assert!(
        err.contains("gw.ini:5") && err.contains("`port`") && err.contains("eighty"),
        "{err}"
    );
}

#[test]
fn accounts_own_instances_and_take_env_overrides() {
    let ini = "[lingma]\nsimulator = true\n[account.work]\nusername = alice\npassword = s3cret-pw\ninstances = 2\n[account.backup]\nsession_bundle = QUJD\n";
    let cfg = build(
        ini,
        &[
            ("LINGMA_GATEWAY_ACCOUNT_WORK_PASSWORD", "from-env-pw"),
            ("LINGMA_GATEWAY_ACCOUNT_SPARE_SESSION_BUNDLE_FILE", "/b.txt"),
        ],
    )
    .unwrap();
    let names: Vec<&str> = cfg.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["backup", "spare", "work"]);
    assert_eq!(cfg.instance_count, 4);
    let owners: Vec<&str> = cfg
        .instance_accounts()
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(owners, ["backup", "spare", "work", "work"]);
    let work = &cfg.accounts[2];
    assert_eq!(
        (work.username.as_str(), work.password.as_str()),
        ("alice", "from-env-pw")
    );
    assert_eq!(
        cfg.accounts[1].session_bundle_file.as_deref(),
        Some(Path::new("/b.txt"))
    );
    let mut raw = RawConfig::defaults();
    raw.apply_ini(ini, Path::new("g.ini")).unwrap();
    let shown = raw.redacted();
    let value = |k: &str| shown.iter().find(|(key, _, _)| key == k).unwrap().1.clone();
    assert_eq!(value("account.work.password"), "<redacted>");
    assert_eq!(value("account.backup.session_bundle"), "<redacted>");
    assert_eq!(value("account.work.username"), "alice");
}

#[test]
fn bad_accounts_are_errors_naming_the_account() {
    for (ini, env, want) in [
        (
            "[account.Work]\nusername = a\npassword = b\n",
            vec![],
            "lowercase",
        ),
        (
            "[account.w]\nuser = a\n",
            vec![],
            "unknown key `user` in [account.w]",
        ),
        (
            "[account.w]\nusername = a\n",
            vec![],
            "set both `username` and `password`",
        ),
        (
            "[account.w]\ninstances = 2\n",
            vec![],
            "needs `username` and `password`",
        ),
        (
            "[account.w]\nusername = a\npassword = b\ninstances = 0\n",
            vec![],
            "account.w.instances",
        ),
        (
            "[lingma]\ninstance_count = 3\n[account.w]\nusername = a\npassword = b\n",
            vec![],
            "the accounts own 1 instances",
        ),
        (
            "",
            vec![("LINGMA_GATEWAY_ACCOUNT_W_PASSWD", "x")],
            "LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY>",
        ),
    ] {
        let ini = format!("[lingma]\nsimulator = true\n{ini}").replace(
            "[lingma]\nsimulator = true\n[lingma]\n",
            "[lingma]\nsimulator = true\n",
        );
        let err = build(&ini, &env).unwrap_err().0;
        assert!(err.contains(want), "{ini}: {err}");
    }
}

/// Environment variables: name and value.
type Env = &'static [(&'static str, &'static str)];

/// A value that is set but means nothing: INI text (after `[lingma] simulator = true`),
/// environment, and what the error must say.
#[rustfmt::skip]
const MEANINGLESS: &[(&str, Env, &str)] = &[
    ("[gateway]\napi_keys = ,\n", &[], "`api_keys` is set but lists no key"),
    ("[gateway]\napi_keys = , ,,\n", &[], "gw.ini:4: `api_keys`"),
    ("", &[("LINGMA_GATEWAY_API_KEYS", ",")], "LINGMA_GATEWAY_API_KEYS"),
    ("", &[("LINGMA_GATEWAY_API_KEYS", " ")], "`api_keys` is only blank space"),
    ("", &[("LINGMA_GATEWAY_ADMIN_TOKEN", " ")], "`admin_token` is only blank space"),
    ("", &[("LINGMA_GATEWAY_METRICS_TOKEN", "\t")], "`metrics_token`"),
    ("", &[("LINGMA_GATEWAY_ADMIN_TOKEN", "adm\u{1b}x")], "`admin_token` holds a control"),
    ("", &[("LINGMA_GATEWAY_API_KEYS", "sk-a,sk\nb")], "`api_keys` holds a key with a control"),
    ("[tools]\ntool_allowlist = ,\n", &[], "`tool_allowlist` is set but lists no tool name"),
    ("[gateway]\nmodel_aliases = ,\n", &[], "`model_aliases` is set but lists no alias"),
    ("", &[("LINGMA_GATEWAY_DEFAULT_MODEL", "  ")], "`default_model`"),
    (
        "[account.main]\nusername = alice\n",
        &[("LINGMA_GATEWAY_ACCOUNT_MAIN_PASSWORD", " ")],
        "`account.main.password` is only blank space",
    ),
    (
        "",
        &[("LINGMA_GATEWAY_ACCOUNT_MAIN_SESSION_BUNDLE", "\n")],
        "`account.main.session_bundle` is only blank space",
    ),
];

#[test]
fn set_values_that_mean_nothing_are_errors_naming_the_key() {
    let sim = "[lingma]\nsimulator = true\n";
    for (ini, env, key) in MEANINGLESS {
        let ini = format!("{sim}{ini}");
        let err = build(&ini, env).unwrap_err().0;
        assert!(err.contains(key), "{ini} {env:?}: {err}");
        assert!(
            !err.contains("adm\u{1b}x") && !err.contains("sk\nb"),
            "{err}"
        );
    }
    // Empty still means not set.
    let cfg = build(
        &format!("{sim}[gateway]\napi_keys =\nadmin_token =\n[tools]\ntool_allowlist =\n"),
        &[
            ("LINGMA_GATEWAY_METRICS_TOKEN", ""),
            ("LINGMA_GATEWAY_MODEL_ALIASES", ""),
        ],
    )
    .unwrap();
    assert!(cfg.api_keys.is_empty() && cfg.admin_token.is_none() && cfg.metrics_token.is_none());
    assert!(cfg.tools.allowlist.is_empty() && cfg.model_aliases.is_empty());
}

#[test]
fn unknown_and_misplaced_keys_are_errors() {
    let err = build("[gateway]\nprot = 1\n", &[]).unwrap_err().0;
    assert!(err.contains("unknown key `prot`"), "{err}");
    let err = build("[gateway]\ninstance_count = 1\n", &[]).unwrap_err().0;
    assert!(err.contains("belongs in [lingma]"), "{err}");
    let err = build("[nope]\n", &[]).unwrap_err().0;
    assert!(err.contains("unknown section"), "{err}");
}

#[test]
fn environment_overrides_file_and_is_named_in_errors() {
    let cfg = build(
        "[gateway]\nport = 1\n[lingma]\nsimulator=true\n",
        &[("LINGMA_GATEWAY_PORT", "2")],
    )
    .unwrap();
    assert_eq!(cfg.port, 2);
    let err = build(
        "[lingma]\nsimulator=true\n",
        &[("LINGMA_GATEWAY_INSTANCE_COUNT", "0")],
    )
    .unwrap_err()
    .0;
    assert!(
        err.contains("LINGMA_GATEWAY_INSTANCE_COUNT") && err.contains("instance_count"),
        "{err}"
    );
    let err = build("", &[("LINGMA_GATEWAY_BOGUS", "1")]).unwrap_err().0;
    assert!(err.contains("LINGMA_GATEWAY_BOGUS"), "{err}");
}

#[test]
fn shipped_gateway_ini_documents_every_key_with_its_default() {
    let shipped = include_str!("../../gateway.ini");
    for k in KEYS {
        let line = format!(";{} = {}", k.key, k.default);
        assert!(
            shipped.lines().any(|l| l.trim_end() == line.trim_end()),
            "gateway.ini lacks `{line}`"
        );
    }
    // Uncommented, it is a valid configuration (with the simulator chosen).
    let uncommented: String = shipped
        .lines()
        .map(|l| {
            if (l.starts_with(';') && l.contains(" =") && !l.starts_with("; "))
                || l.starts_with(";[")
            {
                &l[1..]
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut raw = RawConfig::defaults();
    raw.apply_ini(&uncommented, Path::new("gateway.ini"))
        .unwrap();
    raw.set_flag("simulator", "true", "--simulator").unwrap();
    raw.build().unwrap();
}

#[test]
fn secrets_are_redacted() {
    let mut raw = RawConfig::defaults();
    raw.apply_ini("[gateway]\napi_keys = sk-secret\n", Path::new("x"))
        .unwrap();
    let shown = raw.redacted();
    let line = shown.iter().find(|(k, _, _)| k == "api_keys").unwrap();
    assert_eq!(line.1, "<redacted>");
    assert!(!format!("{shown:?}").contains("sk-secret"));
}

#[test]
fn attach_dirs_are_per_instance_and_need_no_binary_when_they_cover_all() {
    let cfg = build("[lingma]\nlingma_attach_dir = /home/me/.lingma\n", &[]).unwrap();
    assert_eq!(
        cfg.lingma_attach_dirs,
        vec![PathBuf::from("/home/me/.lingma")]
    );
    assert!(
        cfg.lingma_bin.is_none(),
        "every instance attached: no binary needed"
    );
    let cfg = build(
        "[lingma]\nsimulator = true\ninstance_count = 3\nlingma_attach_dir = /a, /b\n",
        &[],
    )
    .unwrap();
    assert_eq!(cfg.lingma_attach_dirs.len(), 2);
    // Instance 1 of 2 spawns: a binary (or the simulator) is needed again.
    let err = build(
        "[lingma]\ninstance_count = 2\nlingma_attach_dir = /a\n",
        &[],
    )
    .unwrap_err()
    .0;
    assert!(err.contains("lingma_bin"), "{err}");
    for (ini, needle) in [
        (
            "lingma_attach_dir = /a, /b\n",
            "2 directories but there are 1 instances",
        ),
        ("lingma_attach_dir = ~/.lingma\n", "full path"),
        (
            "lingma_attach_dir = /a\nlingma_socket_port = 37010\n",
            "set one",
        ),
        ("lingma_attach_dir = ,\n", "lists no directory"),
    ] {
        let err = build(&format!("[lingma]\nsimulator = true\n{ini}"), &[])
            .unwrap_err()
            .0;
        assert!(
            err.contains("`lingma_attach_dir`") && err.contains(needle),
            "{ini}: {err}"
        );
        assert!(err.contains("gw.ini:"), "{err}");
    }
}

#[test]
fn the_websocket_path_and_header_are_checked_and_the_value_is_a_secret() {
    let base = "[lingma]\nsimulator = true\n";
    let cfg = build(base, &[]).unwrap();
    assert_eq!(
        (cfg.lingma_ws_path.as_str(), &cfg.lingma_ws_header),
        ("/", &None)
    );
    let cfg = build(
        &format!("{base}lingma_ws_path = /ws\nlingma_ws_header = Cosy-MachineToken\n"),
        &[("LINGMA_GATEWAY_LINGMA_WS_HEADER_VALUE", "tok-123")],
    )
    .unwrap();
    assert_eq!(cfg.lingma_ws_path, "/ws");
    let h = cfg.lingma_ws_header.clone().unwrap();
    assert_eq!(
        (h.name.as_str(), h.value.as_str()),
        ("Cosy-MachineToken", "tok-123")
    );
    assert!(cfg.secrets().contains(&"tok-123".to_string()));
    assert!(!format!("{cfg:?}").contains("tok-123"));
    for (ini, key) in [
        ("lingma_ws_path = ws\n", "lingma_ws_path"),
        ("lingma_ws_path = /a b\n", "lingma_ws_path"),
        ("lingma_ws_header = X-Token\n", "lingma_ws_header_value"),
        ("lingma_ws_header_value = v\n", "lingma_ws_header"),
        (
            "lingma_ws_header = Bad:Name\nlingma_ws_header_value = v\n",
            "lingma_ws_header",
        ),
        (
            "lingma_ws_header = X\nlingma_ws_header_value = v\nlingma_ws_header_file = /f\n",
            "not both",
        ),
        (
            "lingma_ws_header = X\nlingma_ws_header_value = caf\u{e9}\n",
            "lingma_ws_header_value",
        ),
        (
            "lingma_ws_header = X\nlingma_ws_header_file = /nonexistent/token.json\n",
            "lingma_ws_header_file",
        ),
    ] {
        let err = build(&format!("{base}{ini}"), &[]).unwrap_err().0;
        assert!(err.contains(key) && err.contains("gw.ini:"), "{ini}: {err}");
        assert!(!err.contains("caf\u{e9}"), "a value is never shown: {err}");
    }
}

#[test]
fn a_header_file_gives_a_json_token_or_its_text_and_is_read_again() {
    let dir = std::env::temp_dir().join(format!("lgw-token-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("machine_token.json");
    std::fs::write(
        &file,
        r#"{"token":"P1gA-first","type":"f677","updateAt":1}"#,
    )
    .unwrap();
    let ini = format!(
        "[lingma]\nsimulator = true\nlingma_ws_header = Cosy-MachineToken\nlingma_ws_header_file = {}\n",
        file.display()
    );
    let cfg = build(&ini, &[]).unwrap();
    let h = cfg.lingma_ws_header.clone().unwrap();
    assert_eq!(h.value, "P1gA-first");
    assert!(cfg.secrets().contains(&"P1gA-first".to_string()));
    // Renewed by the runtime: the next connection sends the new one.
    std::fs::write(&file, "plain-token\n").unwrap();
    assert_eq!(h.current(), ("plain-token".to_string(), None));
    // Gone meanwhile: the last value known, and why (without any value).
    std::fs::remove_file(&file).unwrap();
    let (value, why) = h.current();
    assert_eq!(value, "P1gA-first");
    assert!(why.unwrap().contains("cannot read"));
    for bad in [r#"{"type":"x"}"#, "", "  \n", "a\u{1}b"] {
        std::fs::write(&file, bad).unwrap();
        let err = build(&ini, &[]).unwrap_err().0;
        assert!(err.contains("`lingma_ws_header_file`"), "{bad:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lingma_dialect_is_auto_by_default_set_by_file_or_env_and_a_bad_one_names_the_key() {
    use super::DialectChoice;
    assert_eq!(
        build("[lingma]\nsimulator = true\n", &[])
            .unwrap()
            .lingma_dialect,
        DialectChoice::Auto
    );
    let cfg = build("[lingma]\nsimulator = true\nlingma_dialect = ACP\n", &[]).unwrap();
    assert_eq!(cfg.lingma_dialect, DialectChoice::Acp);
    let cfg = build(
        "[lingma]\nsimulator = true\nlingma_dialect = acp\n",
        &[("LINGMA_GATEWAY_LINGMA_DIALECT", "cosy")],
    )
    .unwrap();
    assert_eq!(cfg.lingma_dialect, DialectChoice::Cosy);
    let err = build("[lingma]\nsimulator = true\nlingma_dialect = lsp\n", &[])
        .unwrap_err()
        .0;
    assert!(
        err.contains("gw.ini:3") && err.contains("`lingma_dialect`") && err.contains("lsp"),
        "{err}"
    );
}
