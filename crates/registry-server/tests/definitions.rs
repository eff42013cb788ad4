//! Definitions over HTTP: save (long and short form), list, replace, delete, validation, roles.

mod common;

use common::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const SAVE: &str = "/registry-svc/definition";
const LIST: &str = "/registry-svc/definitions";

fn long_form() -> Value {
    json!({
        "id": "user-svc",
        "image": {"name": "registry.example/user-svc:1.2", "internalPorts": [8080, 9090]},
        "apiSpecs": [{
            "url": "https://example.com/user-svc/openapi.json",
            "protocolType": "OpenAPI",
            "version": "3.0.1",
            "metadata": {"owner": "team-a", "stability": "beta"}
        }],
        "clients": [{"language": "JavaScript", "url": "https://example.com/user-svc-js"}],
        "envars": [{"key": "LOG_LEVEL", "value": "debug"}, {"key": "EMPTY", "value": ""}],
        "ports": [{"internal": 8080, "host": 8887}, {"internal": 9090, "host": 9999}]
    })
}

async fn list(d: &Daemon) -> Vec<Value> {
    let r = d.admin(Method::GET, LIST, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["definitions"]
        .as_array()
        .unwrap_or_else(|| panic!("no definitions array: {}", r.text))
        .clone()
}

fn find<'a>(definitions: &'a [Value], id: &str) -> &'a Value {
    definitions
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("definition {id} not listed in {definitions:?}"))
}

/// Reads a short- or long-form YAML definition file and turns it into JSON.
fn yaml_file(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/definitions")
}

#[tokio::test]
async fn empty_list_is_an_empty_array() {
    let d = Daemon::start().await;
    let r = d.admin(Method::GET, LIST, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"definitions": []}), "{}", r.text);
}

#[tokio::test]
async fn long_form_reads_back_exactly() {
    let d = Daemon::start().await;
    d.save_definition(long_form()).await;
    let definitions = list(&d).await;
    assert_eq!(definitions, vec![long_form()]);
    let def = &definitions[0];
    assert_eq!(def["image"]["internalPorts"], json!([8080, 9090]));
    assert_eq!(def["ports"][1], json!({"internal": 9090, "host": 9999}));
    assert_eq!(def["apiSpecs"][0]["metadata"]["owner"], "team-a");
    assert!(
        def.get("repository").is_none(),
        "no repository was given: {def}"
    );
}

#[tokio::test]
async fn saving_again_replaces_the_definition() {
    let d = Daemon::start().await;
    d.save_definition(long_form()).await;
    d.save_definition(json!({"id": "other", "image": {"name": "x/other", "internalPorts": [1]}}))
        .await;
    let replacement = json!({
        "id": "user-svc",
        "repository": {
            "url": "https://example.com/user-svc.git",
            "version": "v2",
            "buildContext": "server",
            "containerFile": "Dockerfile",
            "internalPorts": [7000]
        },
        "apiSpecs": [],
        "clients": [],
        "envars": [{"key": "MODE", "value": "replaced"}],
        "ports": [{"internal": 7000, "host": 7001}]
    });
    d.save_definition(replacement.clone()).await;
    let definitions = list(&d).await;
    assert_eq!(definitions.len(), 2, "{definitions:?}");
    let saved = find(&definitions, "user-svc");
    assert_eq!(
        saved, &replacement,
        "the old fields (image, envars, ports) must be gone"
    );
    assert!(saved.get("image").is_none());
    assert_eq!(find(&definitions, "other")["image"]["name"], "x/other");
}

#[tokio::test]
async fn delete_then_delete_again_is_404() {
    let d = Daemon::start().await;
    d.save_definition(long_form()).await;
    d.save_definition(json!({"id": "keep-me"})).await;
    let r = d
        .admin(Method::DELETE, "/registry-svc/definition/user-svc", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty(), "204 has no body: {:?}", r.text);
    let ids: Vec<_> = list(&d).await.iter().map(|d| d["id"].clone()).collect();
    assert_eq!(ids, vec![json!("keep-me")]);
    let r = d
        .admin(Method::DELETE, "/registry-svc/definition/user-svc", None)
        .await;
    r.assert_error(StatusCode::NOT_FOUND, Some("user-svc"), "deleting again");
    let r = d
        .admin(Method::DELETE, "/registry-svc/definition/never-was", None)
        .await;
    r.assert_error(StatusCode::NOT_FOUND, None, "deleting an unknown one");
}

#[tokio::test]
async fn definition_without_image_or_repository_is_valid() {
    let d = Daemon::start().await;
    d.save_definition(json!({"id": "bare"})).await;
    let definitions = list(&d).await;
    assert_eq!(
        definitions,
        vec![json!({"id": "bare", "apiSpecs": [], "clients": [], "envars": [], "ports": []})]
    );
}

#[tokio::test]
async fn short_form_examples_read_back_in_long_form() {
    let d = Daemon::start().await;
    let a = yaml_file(&examples_dir().join("test-a.yaml"));
    let b = yaml_file(&examples_dir().join("test-b.yaml"));
    assert_eq!(a["hostPort"], 8887, "test-a.yaml is the short form");
    d.save_definition(a).await;
    d.save_definition(b).await;
    let definitions = list(&d).await;
    assert_eq!(definitions.len(), 2);

    let a = find(&definitions, "test-a");
    assert_eq!(
        a["image"],
        json!({"name": "hashicorp/http-echo", "internalPorts": [8080]})
    );
    assert_eq!(a["ports"], json!([{"internal": 8080, "host": 8887}]));
    assert!(
        a.get("hostPort").is_none() && a["image"].get("port").is_none(),
        "long form only: {a}"
    );
    assert!(a.get("repository").is_none());

    let b = find(&definitions, "test-b");
    assert_eq!(
        b["repository"]["url"],
        "https://github.com/openorch/openorch.git"
    );
    assert_eq!(b["repository"]["containerFile"], "server/docker/Dockerfile");
    assert_eq!(b["repository"]["internalPorts"], json!([]));
    assert_eq!(b["ports"], json!([{"internal": 0, "host": 9998}]));
    assert!(
        b.get("hostPort").is_none() && b.get("image").is_none(),
        "long form only: {b}"
    );
}

#[tokio::test]
async fn shared_examples_all_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("{} is absent; skipping", dir.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let d = Daemon::start().await;
    for file in &files {
        let definition = yaml_file(file);
        let id = definition["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no id", file.display()))
            .to_string();
        d.save_definition(definition).await;
        find(&list(&d).await, &id);
    }
    assert_eq!(list(&d).await.len(), files.len());
}

#[tokio::test]
async fn image_and_repository_together_is_400() {
    let d = Daemon::start().await;
    let r = d
        .admin(
            Method::PUT,
            SAVE,
            Some(json!({"definition": {
                "id": "both",
                "image": {"name": "a/b", "internalPorts": [80]},
                "repository": {"url": "https://example.com/r.git"}
            }})),
        )
        .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        Some("definition.image"),
        "image and repository",
    );
    assert_eq!(list(&d).await, Vec::<Value>::new(), "nothing is saved");
}

#[tokio::test]
async fn bad_id_characters_are_400() {
    let d = Daemon::start().await;
    for id in ["a b", "a/b", "ü", ""] {
        let r = d
            .admin(Method::PUT, SAVE, Some(json!({"definition": {"id": id}})))
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some("definition.id"), id);
    }
    assert_eq!(list(&d).await, Vec::<Value>::new());
}

/// The fields the originals' documents mark required: their generated clients always send
/// them, and a definition read back always has them.
#[tokio::test]
async fn fields_the_originals_require_are_400_when_missing() {
    let d = Daemon::start().await;
    for (definition, missing) in [
        (json!({"envars": [{"key": "MODE"}]}), "value"),
        (json!({"ports": [{"host": 8080}]}), "internal"),
        (json!({"clients": [{"language": "Go"}]}), "url"),
    ] {
        let mut body = json!({"id": "partial"});
        body.as_object_mut()
            .unwrap()
            .extend(definition.as_object().unwrap().clone());
        let r = d
            .admin(Method::PUT, SAVE, Some(json!({ "definition": body })))
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(missing), &body.to_string());
    }
    assert_eq!(list(&d).await, Vec::<Value>::new(), "nothing is saved");
}

#[tokio::test]
async fn users_may_list_but_not_save_or_delete() {
    let d = Daemon::start().await;
    d.save_definition(long_form()).await;
    let user = d.token("svc-a", "user").await;

    // Saving a new one or replacing an existing one is refused, and leaves it as it was.
    for id in ["mine", "user-svc"] {
        let r = d
            .as_token(
                &user,
                Method::PUT,
                SAVE,
                Some(json!({"definition": {"id": id}})),
            )
            .await;
        r.assert_error(StatusCode::FORBIDDEN, Some("permission"), id);
    }
    let r = d
        .as_token(
            &user,
            Method::DELETE,
            "/registry-svc/definition/user-svc",
            None,
        )
        .await;
    r.assert_error(StatusCode::FORBIDDEN, None, "deleting");

    let r = d.as_token(&user, Method::GET, LIST, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"definitions": [long_form()]}));
}

#[tokio::test]
async fn definitions_survive_a_restart() {
    let d = Daemon::start().await;
    d.save_definition(long_form()).await;
    let d = d.restart().await;
    assert_eq!(list(&d).await, vec![long_form()]);
}

#[tokio::test]
async fn definitions_page_by_limit_and_after() {
    let d = Daemon::start().await;
    for id in ["d-a", "d-b", "d-c"] {
        d.save_definition(json!({ "id": id })).await;
    }
    let page = |query: &'static str| {
        let d = &d;
        async move {
            let r = d
                .admin(
                    Method::GET,
                    &format!("/registry-svc/definitions?{query}"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
            let ids: Vec<String> = r.body["definitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_string())
                .collect();
            (ids, r.body["next"].as_str().map(str::to_string))
        }
    };
    assert_eq!(
        page("limit=2").await,
        (vec!["d-a".into(), "d-b".into()], Some("d-b".into()))
    );
    assert_eq!(page("limit=2&after=d-b").await, (vec!["d-c".into()], None));
    assert_eq!(page("after=d-a").await.0, ["d-b", "d-c"]);
}
