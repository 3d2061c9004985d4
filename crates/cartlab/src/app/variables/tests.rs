use super::*;
use crate::app::expressions::{TemplatePart, validate_id, validate_manifest_name};
use crate::app::manifest::{AppManifest, ComponentDecl, VariableDecl};
use crate::app::routes::Router;
use std::path::PathBuf;

fn manifest() -> AppManifest {
    let mut variables = BTreeMap::new();
    variables.insert(
        "greeting".to_owned(),
        VariableDecl {
            default: Some("hello".into()),
            required: false,
            secret: false,
        },
    );
    variables.insert(
        "api_key".to_owned(),
        VariableDecl {
            default: None,
            required: true,
            secret: true,
        },
    );
    let mut cvars = BTreeMap::new();
    cvars.insert(
        "message".to_owned(),
        "{{greeting}}, {{ api_key }}!".to_owned(),
    );
    cvars.insert("plain".to_owned(), "literal".to_owned());
    let mut components = BTreeMap::new();
    components.insert(
        "comp".to_owned(),
        ComponentDecl {
            id: "comp".into(),
            description: None,
            source: PathBuf::from("/x.wasm"),
            key_value_stores: vec![],
            variables: cvars,
            environment: BTreeMap::new(),
            allowed_outbound_hosts: vec![],
            build: None,
        },
    );
    AppManifest {
        path: PathBuf::from("/app/spin.toml"),
        dir: PathBuf::from("/app"),
        name: "app".into(),
        version: None,
        variables,
        router: Router::default(),
        components,
    }
}

#[test]
fn template_parsing() {
    let t = Template::parse("a-{{ x }}-b{{y}}").unwrap();
    assert_eq!(
        t.parts(),
        &[
            TemplatePart::Literal("a-".into()),
            TemplatePart::Variable("x".into()),
            TemplatePart::Literal("-b".into()),
            TemplatePart::Variable("y".into()),
        ]
    );
    assert_eq!(t.variables().collect::<Vec<_>>(), ["x", "y"]);
    assert!(Template::parse("{{ ok }} {{ unmatched").is_err());
    assert_eq!(Template::parse("").unwrap().parts(), &[]);
}

#[test]
fn priority_cli_then_env_then_default() {
    let m = manifest();
    let env = |k: &str| match k {
        "SPIN_VARIABLE_API_KEY" => Some("from-env".to_owned()),
        "SPIN_VARIABLE_GREETING" => Some("hi-env".to_owned()),
        _ => None,
    };
    // env beats default
    let v = Variables::resolve(&m, &BTreeMap::new(), env).unwrap();
    assert_eq!(
        v.component_value("comp", "message").unwrap(),
        "hi-env, from-env!"
    );
    // cli beats env
    let cli = BTreeMap::from([("greeting".to_owned(), "cli".to_owned())]);
    let v = Variables::resolve(&m, &cli, env).unwrap();
    assert_eq!(
        v.component_value("comp", "message").unwrap(),
        "cli, from-env!"
    );
    // default used when nothing else
    let v = Variables::resolve(&m, &BTreeMap::new(), |k| {
        (k == "SPIN_VARIABLE_API_KEY").then(|| "k".to_owned())
    })
    .unwrap();
    assert_eq!(v.component_value("comp", "message").unwrap(), "hello, k!");
    assert_eq!(v.component_value("comp", "plain").unwrap(), "literal");
}

#[test]
fn missing_required_variable_is_a_startup_error_naming_it() {
    let err = Variables::resolve(&manifest(), &BTreeMap::new(), |_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`api_key`"), "{err}");
    assert!(err.contains("SPIN_VARIABLE_API_KEY"), "{err}");
}

#[test]
fn lookup_errors_mirror_spin_variants() {
    let v = Variables::resolve(&manifest(), &BTreeMap::new(), |_| Some("x".into())).unwrap();
    assert!(matches!(
        v.component_value("comp", "Bad-Name"),
        Err(VariableError::InvalidName(_))
    ));
    assert!(matches!(
        v.component_value("comp", "a__b"),
        Err(VariableError::InvalidName(_))
    ));
    assert!(matches!(
        v.component_value("comp", "nope"),
        Err(VariableError::Undefined(_))
    ));
    assert!(matches!(
        v.component_value("other", "message"),
        Err(VariableError::Undefined(_))
    ));
    // An app variable not mapped into the component is undefined for it, as in Spin.
    assert!(matches!(
        v.component_value("comp", "greeting"),
        Err(VariableError::Undefined(_))
    ));
}

#[test]
fn debug_never_prints_values() {
    let cli = BTreeMap::from([("api_key".to_owned(), "s3cr3t".to_owned())]);
    let v = Variables::resolve(&manifest(), &cli, |_| None).unwrap();
    assert!(!format!("{v:?}").contains("s3cr3t"));
}

#[test]
fn names() {
    for ok in ["a", "api_key", "v2_url", "abc123"] {
        assert!(validate_manifest_name(ok).is_ok(), "{ok}");
    }
    for bad in ["", "2x", "a__b", "_a", "a_", "a_1", "Api", "api-key", "a b"] {
        assert!(validate_manifest_name(bad).is_err(), "{bad}");
    }
    assert!(validate_id("stateless-cart", '-', false).is_ok());
    assert!(validate_id("stateless_cart", '-', false).is_err());
    assert!(validate_key("a_1").is_ok());
    assert!(validate_key("a_").is_err());
}

#[test]
fn key_value_and_variable_sources() {
    assert_eq!(
        parse_key_value("A=b=c").unwrap(),
        ("A".into(), "b=c".into())
    );
    assert_eq!(parse_key_value("A=").unwrap(), ("A".into(), "".into()));
    assert!(parse_key_value("A").is_err());
    assert!(parse_key_value("=x").is_err());

    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("secret.txt");
    std::fs::write(&content, "from-file").unwrap();
    let json = dir.path().join("vars.json");
    std::fs::write(&json, r#"{"a": "1", "b": "2"}"#).unwrap();
    let toml_file = dir.path().join("vars.toml");
    std::fs::write(&toml_file, "b = \"3\"\n").unwrap();

    let sources: Vec<VariableSource> = [
        "x=y".to_owned(),
        format!("s=@{}", content.display()),
        format!("@{}", json.display()),
        format!("@{}", toml_file.display()),
    ]
    .iter()
    .map(|s| parse_variable_source(s).unwrap())
    .collect();
    let merged = collect_cli_variables(&sources).unwrap();
    assert_eq!(merged["x"], "y");
    assert_eq!(merged["s"], "from-file");
    assert_eq!(merged["a"], "1");
    assert_eq!(merged["b"], "3", "later source wins");
    assert!(parse_variable_source("@vars.yaml").is_err());
    assert!(parse_variable_source("novalue").is_err());
}
