//! Instances over HTTP: registration (by URL, by parts, by id), idempotent upsert, every
//! list filter, delete, ownership, and concurrent registrations.

mod common;

use common::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const REGISTER: &str = "/registry-svc/instance";
const LIST: &str = "/registry-svc/instances";

/// Deletes instance `id` as `token`, asserting a 204 with no body.
async fn delete_as(d: &Daemon, token: &str, id: &str) {
    let r = d
        .as_token(
            token,
            Method::DELETE,
            &format!("/registry-svc/instance/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{id}: {}", r.text);
    assert!(r.text.is_empty(), "204 has no body: {:?}", r.text);
}

/// The instances a list request answers (as admin), asserting a 200.
async fn list(d: &Daemon, query: &str) -> Vec<Value> {
    let r = d.admin(Method::GET, &format!("{LIST}{query}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
    r.body["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no instances array: {}", r.text))
        .clone()
}

async fn ids(d: &Daemon, query: &str) -> BTreeSet<String> {
    list(d, query)
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 15 && id.starts_with("inst_") && id[5..].chars().all(|c| c.is_ascii_alphanumeric())
}

#[tokio::test]
async fn register_by_url() {
    let d = Daemon::start().await;
    let id = d
        .register(json!({"url": "http://127.0.0.1:1/api/v1", "deploymentId": "dep-1"}))
        .await;
    assert!(is_generated_id(&id), "{id}");

    let instances = list(&d, "").await;
    assert_eq!(instances.len(), 1);
    let i = &instances[0];
    assert_eq!(i["id"], id.as_str());
    assert_eq!(i["url"], "http://127.0.0.1:1/api/v1");
    assert_eq!(i["scheme"], "http");
    assert_eq!(i["host"], "127.0.0.1");
    assert_eq!(i["ip"], "127.0.0.1");
    assert_eq!(i["port"], 1);
    assert_eq!(i["path"], "/api/v1");
    assert_eq!(i["deploymentId"], "dep-1");
    assert_eq!(i["slug"], "admin", "a new instance takes the caller's slug");
    // Unknown until its first check, made at once, finds the address dead.
    assert!(
        i["status"] == "Unknown" || i["status"] == "Unreachable",
        "{i}"
    );
    assert_eq!(i["tags"], json!([]));
    assert!(i.get("lastHeartbeat").is_none(), "never seen alive: {i}");
}

#[tokio::test]
async fn register_by_parts_builds_the_url() {
    let d = Daemon::start().await;
    let id = d
        .register(json!({"scheme": "http", "host": "127.0.0.1", "port": 9000, "path": "api"}))
        .await;
    assert!(is_generated_id(&id), "{id}");
    let instances = list(&d, "").await;
    assert_eq!(instances.len(), 1);
    let i = &instances[0];
    assert_eq!(i["url"], "http://127.0.0.1:9000/api");
    assert_eq!(
        (i["host"].as_str(), i["port"].as_u64(), i["path"].as_str()),
        (Some("127.0.0.1"), Some(9000), Some("/api"))
    );

    // An ip alone serves as the host.
    d.register(json!({"scheme": "http", "ip": "127.0.0.2", "port": 9001}))
        .await;
    let i = list(&d, "?ip=127.0.0.2").await;
    assert_eq!(i.len(), 1);
    assert_eq!(i[0]["url"], "http://127.0.0.2:9001");
}

#[tokio::test]
async fn registering_the_same_url_again_updates_in_place() {
    let d = Daemon::start().await;
    let url = "http://127.0.0.1:1";
    let first = d
        .register(json!({"url": url, "tags": ["blue"], "deploymentId": "d1"}))
        .await;
    let second = d
        .register(json!({"url": url, "tags": ["green", "canary"], "deploymentId": "d2"}))
        .await;
    assert_eq!(first, second);
    let instances = list(&d, "").await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["id"], first);
    assert_eq!(instances[0]["tags"], json!(["green", "canary"]));
    assert_eq!(instances[0]["deploymentId"], "d2");
}

#[tokio::test]
async fn register_with_a_given_id() {
    let d = Daemon::start().await;
    let id = d
        .register(json!({"id": "my-inst.1", "url": "http://127.0.0.1:1"}))
        .await;
    assert_eq!(id, "my-inst.1");
    // The id wins over the URL: the same instance moves to a new address.
    let again = d
        .register(json!({"id": "my-inst.1", "url": "http://127.0.0.1:2/x"}))
        .await;
    assert_eq!(again, "my-inst.1");
    let instances = list(&d, "").await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0]["id"], "my-inst.1");
    assert_eq!(instances[0]["url"], "http://127.0.0.1:2/x");
    assert_eq!(instances[0]["port"], 2);
}

#[tokio::test]
async fn empty_list_is_an_empty_array() {
    let d = Daemon::start().await;
    let r = d.admin(Method::GET, LIST, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"instances": []}), "{}", r.text);
    let r = d
        .admin(Method::GET, &format!("{LIST}?slug=nobody"), None)
        .await;
    assert_eq!(r.body, json!({"instances": []}), "{}", r.text);
}

#[tokio::test]
async fn delete_then_delete_again_is_404() {
    let d = Daemon::start().await;
    let gone = d.register(json!({"url": "http://127.0.0.1:1"})).await;
    let kept = d.register(json!({"url": "http://127.0.0.1:2"})).await;
    delete_as(&d, &d.admin, &gone).await;
    assert_eq!(ids(&d, "").await, set(&[&kept]));
    let r = d
        .admin(
            Method::DELETE,
            &format!("/registry-svc/instance/{gone}"),
            None,
        )
        .await;
    r.assert_error(StatusCode::NOT_FOUND, Some(&gone), "deleting again");
}

/// For each filter, two instances that differ in that field (and only as much else as the
/// address forces), on a fresh daemon; the filter must pick exactly one.
#[tokio::test]
async fn every_filter_selects_by_its_field() {
    /// The instance `id` at http://127.0.0.1:1, with `fields` set over it.
    fn instance(id: &str, fields: Value) -> Value {
        let mut body = json!({"id": id, "url": "http://127.0.0.1:1"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    }
    // (filter, what `a` sets, what `b` sets) over `instance("a")` and `instance("b")`.
    let cases = [
        (
            "id=inst-a",
            json!({"id": "inst-a"}),
            json!({"id": "inst-b"}),
        ),
        (
            "slug=svc-a",
            json!({"slug": "svc-a"}),
            json!({"slug": "svc-b"}),
        ),
        (
            "host=127.0.0.1",
            json!({"ip": "127.0.0.9"}),
            json!({"url": "http://127.0.0.2:1", "ip": "127.0.0.9"}),
        ),
        (
            "ip=127.0.0.3",
            json!({"ip": "127.0.0.3"}),
            json!({"ip": "127.0.0.4"}),
        ),
        (
            "scheme=https",
            json!({"url": "https://127.0.0.1:1"}),
            json!({}),
        ),
        (
            "path=%2Fv1",
            json!({"url": "http://127.0.0.1:1/v1"}),
            json!({"url": "http://127.0.0.1:1/v2"}),
        ),
        (
            "deploymentId=dep-a",
            json!({"deploymentId": "dep-a"}),
            json!({"deploymentId": "dep-b"}),
        ),
        (
            "nodeUrl=http%3A%2F%2F127.0.0.1%3A58231",
            json!({"nodeUrl": "http://127.0.0.1:58231"}),
            json!({"nodeUrl": "http://127.0.0.2:58231"}),
        ),
        (
            "tag=x&tag=y",
            json!({"tags": ["x", "y", "z"]}),
            json!({"tags": ["x"]}),
        ),
    ];
    for (filter, a, b) in cases {
        let d = Daemon::start().await;
        let a = d.register(instance("a", a)).await;
        let b = d.register(instance("b", b)).await;
        assert_ne!(a, b);
        assert_eq!(ids(&d, "").await, set(&[&a, &b]), "{filter}");
        assert_eq!(
            ids(&d, &format!("?{filter}")).await,
            set(&[&a]),
            "filter {filter}"
        );
    }
}
#[tokio::test]
async fn filters_combine_with_and() {
    let d = Daemon::start().await;
    d.register(json!({"id": "a1", "url": "http://127.0.0.1:1", "slug": "svc-a", "deploymentId": "d1", "tags": ["x"]})).await;
    d.register(json!({"id": "a2", "url": "http://127.0.0.1:2", "slug": "svc-a", "deploymentId": "d2", "tags": ["x", "y"]})).await;
    d.register(json!({"id": "b1", "url": "http://127.0.0.1:3", "slug": "svc-b", "deploymentId": "d1", "tags": ["y"]})).await;

    assert_eq!(ids(&d, "?slug=svc-a").await, set(&["a1", "a2"]));
    assert_eq!(ids(&d, "?deploymentId=d1").await, set(&["a1", "b1"]));
    assert_eq!(ids(&d, "?slug=svc-a&deploymentId=d1").await, set(&["a1"]));
    assert_eq!(ids(&d, "?slug=svc-b&deploymentId=d2").await, set(&[]));
    assert_eq!(ids(&d, "?tag=y").await, set(&["a2", "b1"]));
    assert_eq!(ids(&d, "?tag=x&tag=y").await, set(&["a2"]));
    assert_eq!(ids(&d, "?tag=nope").await, set(&[]));
    // Every address is dead: each instance fails its first check, made at once.
    for id in ["a1", "a2", "b1"] {
        d.wait_for_status(id, "Unreachable", Duration::from_secs(10))
            .await;
    }
    assert_eq!(
        ids(&d, "?status=Unreachable").await,
        set(&["a1", "a2", "b1"])
    );
    assert_eq!(ids(&d, "?status=Healthy").await, set(&[]));
    assert_eq!(
        ids(&d, "?status=Unreachable&slug=svc-b").await,
        set(&["b1"])
    );
    // Parameters the registry does not know are ignored.
    assert_eq!(ids(&d, "?flavour=vanilla").await, set(&["a1", "a2", "b1"]));
}

#[tokio::test]
async fn a_list_asked_again_follows_every_change_however_it_is_spelled() {
    let d = Daemon::start().await;
    let spellings = ["?slug=svc&deploymentId=d1", "?deploymentId=d1&slug=svc"];
    let mut expected = BTreeSet::new();
    for n in 1..=3 {
        let id = format!("i{n}");
        d.register(json!({"id": id, "url": format!("http://127.0.0.1:{n}"), "slug": "svc", "deploymentId": "d1"}))
            .await;
        expected.insert(id);
        // Asked twice each: the second answer may come from what the first left behind.
        for query in spellings.iter().chain(&spellings) {
            assert_eq!(
                ids(&d, query).await,
                expected,
                "{query} after {n} registrations"
            );
        }
    }
    delete_as(&d, &d.admin, "i2").await;
    expected.remove("i2");
    for query in spellings {
        assert_eq!(ids(&d, query).await, expected, "{query} after a removal");
    }
    // Asking for a valid list first does not let a malformed one through.
    let r = d
        .admin(Method::GET, &format!("{LIST}?status=Sleepy"), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

#[tokio::test]
async fn only_the_owner_an_admin_or_a_trusted_slug_may_change_an_instance() {
    let d = Daemon::start().await;
    let svc_a = d.token("svc-a", "user").await;
    let svc_b = d.token("svc-b", "user").await;
    let url = "http://127.0.0.1:1";

    let id = d
        .register_as(&svc_a, json!({"url": url, "tags": ["original"]}))
        .await;
    let listed = list(&d, "").await;
    assert_eq!(listed[0]["slug"], "svc-a", "the caller's slug");

    // svc-b can neither take it over by URL or by id, nor remove it, nor register a new
    // instance in svc-a's name.
    let path = format!("/registry-svc/instance/{id}");
    let refused = [
        (
            Method::PUT,
            REGISTER,
            Some(json!({"url": url, "tags": ["hijacked"]})),
            Some("svc-a"),
        ),
        (
            Method::PUT,
            REGISTER,
            Some(json!({"id": id, "url": "http://127.0.0.1:2", "tags": ["hijacked"]})),
            None,
        ),
        (Method::DELETE, path.as_str(), None, None),
        (
            Method::PUT,
            REGISTER,
            Some(json!({"url": "http://127.0.0.1:3", "slug": "svc-a"})),
            None,
        ),
    ];
    for (method, path, body, names) in refused {
        let what = format!("{method} {path} {body:?}");
        let r = d.as_token(&svc_b, method, path, body).await;
        r.assert_error(StatusCode::FORBIDDEN, names, &what);
    }

    let listed = list(&d, "").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["url"].as_str(), listed[0]["tags"].clone()),
        (Some(url), json!(["original"]))
    );

    // The owner may update and remove it.
    assert_eq!(
        d.register_as(&svc_a, json!({"url": url, "tags": ["updated"]}))
            .await,
        id
    );
    assert_eq!(list(&d, "").await[0]["tags"], json!(["updated"]));
    delete_as(&d, &svc_a, &id).await;
    assert_eq!(list(&d, "").await, Vec::<Value>::new());

    // An admin may remove anyone's.
    let id = d.register_as(&svc_a, json!({"url": url})).await;
    delete_as(&d, &d.admin, &id).await;
    assert_eq!(list(&d, "").await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_trusted_slug_manages_instances_of_every_slug() {
    let d = Daemon::start().await;
    let deploy = d.token("deploy-svc", "user").await;
    let svc_a = d.token("svc-a", "user").await;

    let theirs = d
        .register_as(
            &deploy,
            json!({"url": "http://127.0.0.1:1", "slug": "other-svc"}),
        )
        .await;
    let listed = list(&d, &format!("?id={theirs}")).await;
    assert_eq!(listed[0]["slug"], "other-svc");

    let owned_by_a = d
        .register_as(&svc_a, json!({"url": "http://127.0.0.1:2"}))
        .await;
    // The trusted slug may update it (keeping its owner) and remove it.
    assert_eq!(
        d.register_as(&deploy, json!({"url": "http://127.0.0.1:2", "tags": ["t"]}))
            .await,
        owned_by_a
    );
    let listed = list(&d, &format!("?id={owned_by_a}")).await;
    assert_eq!(
        (listed[0]["slug"].as_str(), listed[0]["tags"].clone()),
        (Some("svc-a"), json!(["t"]))
    );
    delete_as(&d, &deploy, &owned_by_a).await;
    assert_eq!(ids(&d, "").await, set(&[&theirs]));
}

#[tokio::test]
async fn concurrent_registrations_of_one_url_make_one_instance() {
    let d = Daemon::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        tasks.spawn(d.register(json!({"url": "http://127.0.0.1:1", "tags": [format!("t{i}")]})));
    }
    let answered: BTreeSet<String> = tasks.join_all().await.into_iter().collect();
    assert_eq!(
        answered.len(),
        1,
        "every registration answers the same id: {answered:?}"
    );
    let instances = list(&d, "").await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(
        Some(instances[0]["id"].as_str().unwrap()),
        answered.first().map(String::as_str)
    );
}

#[tokio::test]
async fn concurrent_registrations_of_different_urls_all_appear() {
    let d = Daemon::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let target = format!("http://127.0.{}.{}:{}", i / 100, i % 100 + 1, 1000 + i);
        let register = d.register(json!({"url": target}));
        tasks.spawn(async move { (register.await, target) });
    }
    let answered: Vec<(String, String)> = tasks.join_all().await;
    let answered_ids: BTreeSet<String> = answered.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(answered_ids.len(), 200, "200 distinct ids");
    let instances = list(&d, "").await;
    assert_eq!(instances.len(), 200);
    for (id, url) in &answered {
        let instance = instances
            .iter()
            .find(|i| i["id"] == *id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(instance["url"], *url);
    }
}

/// Registers `count` instances of slug `paged` with health checks off (127.0.0.1 ports
/// 20000 and up, never dialled); returns their ids.
async fn register_paged(d: &Daemon, count: u16) -> BTreeSet<String> {
    let registrations: Vec<_> = (0..count)
        .map(|n| {
            d.register(json!({
                "url": format!("http://127.0.0.1:{}", 20_000 + n),
                "slug": "paged",
                "healthCheck": {"type": "none"},
            }))
        })
        .collect();
    let mut ids = BTreeSet::new();
    for registration in registrations {
        ids.insert(registration.await);
    }
    ids
}

#[tokio::test]
async fn lists_page_by_limit_and_after() {
    let d = Daemon::start().await;
    let all = register_paged(&d, 25).await;
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let r = d
            .admin(
                Method::GET,
                &format!("{LIST}?slug=paged&limit=10&after={after}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let page: Vec<String> = r.body["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        pages += 1;
        assert!(page.len() <= 10, "{}", page.len());
        seen.extend(page.iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), page.last().map(String::as_str));
                after = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in id order: {seen:?}"
    );
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    // The whole list, asked for plainly, has no `next`: the OpenOrch answer unchanged.
    let whole = d
        .admin(Method::GET, &format!("{LIST}?slug=paged"), None)
        .await;
    assert_eq!(whole.body["instances"].as_array().unwrap().len(), 25);
    assert!(whole.body.get("next").is_none(), "{}", whole.text);
    // `after` alone skips, without a limit.
    let first = all.iter().next().unwrap();
    let rest = ids(&d, &format!("?slug=paged&after={first}")).await;
    assert_eq!(rest.len(), 24);
    assert!(!rest.contains(first));
}

#[tokio::test]
async fn bad_limit_is_a_400_naming_it() {
    let d = Daemon::start().await;
    for bad in ["0", "-3", "many", "10001"] {
        let r = d
            .admin(Method::GET, &format!("{LIST}?limit={bad}"), None)
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some("limit"), bad);
        let r = d
            .admin(
                Method::GET,
                &format!("/registry-svc/definitions?limit={bad}"),
                None,
            )
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some("limit"), bad);
    }
}

#[tokio::test]
async fn a_long_list_streams_whole_and_intact() {
    let d = Daemon::start().await;
    // More than one streamed chunk (512) and more than the cached-list limit.
    let all = register_paged(&d, 1300).await;
    let r = d
        .admin(Method::GET, &format!("{LIST}?slug=paged"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let listed: Vec<String> = r.body["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", &r.text[..200.min(r.text.len())]))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), all);
    assert!(r.index() > 0, "a streamed answer still carries its index");
}
