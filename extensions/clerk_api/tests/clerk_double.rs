//! The client against the Clerk API double: every page, filters as Clerk's own endpoints, 429s
//! waited out within bounds, every other failure one error with Clerk's message.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clerk_api::{ClerkError, Client, Filter, Limits, Object};
use serde_json::Value;
use support::clerk::{organizations, users, ClerkDouble, Mode};

const KEY: &str = "sk_test_double_key";

fn double(user_count: usize, members: &[usize]) -> ClerkDouble {
    let (orgs, memberships) = organizations(members);
    ClerkDouble::start(KEY, users(user_count), orgs, memberships)
}

fn client(clerk: &ClerkDouble, limits: Limits) -> Client {
    Client::new(&clerk.url(), KEY, limits).unwrap()
}

fn ids(records: &[Value], path: &[&str]) -> BTreeSet<String> {
    records.iter().map(|r| path.iter().fold(r, |v, k| &v[*k]).as_str().unwrap().to_string()).collect()
}

#[test]
fn every_page_of_every_object_comes_back() {
    let clerk = double(1234, &[1200, 3, 0]);
    let mut client = client(&clerk, Limits::default());
    let all_users = client.list(Object::Users, &Filter::default()).unwrap();
    assert_eq!(ids(&all_users, &["id"]).len(), 1234);
    assert_eq!(clerk.take_requests().0, 3, "pages of 500");
    let memberships = client.list(Object::OrganizationMemberships, &Filter::default()).unwrap();
    assert_eq!(ids(&memberships, &["id"]).len(), 1203);
    let of_big = Filter { organization_ids: Some(vec!["org_0".into()]), ..Filter::default() };
    let big = client.list(Object::OrganizationMemberships, &of_big).unwrap();
    assert_eq!(ids(&big, &["public_user_data", "user_id"]).len(), 1200, "no cap at 500 members");
    let organizations = client.list(Object::Organizations, &Filter::default()).unwrap();
    assert_eq!(ids(&organizations, &["id"]), BTreeSet::from(["org_0".into(), "org_1".into(), "org_2".into()]));

    clerk.set_mode(Mode::NoInstanceMemberships);
    clerk.take_requests();
    let memberships = client.list(Object::OrganizationMemberships, &Filter::default()).unwrap();
    assert_eq!(
        ids(&memberships, &["id"]).len(),
        1203,
        "without the instance-wide listing, organization by organization"
    );
    let (count, paths) = clerk.take_requests();
    assert_eq!(
        count,
        1 + 1 + 3 + 1 + 1,
        "the 404, the organizations, 3 pages of org_0, 1 each of org_1 and org_2: {paths:?}"
    );
}

#[test]
fn filters_use_clerks_own_endpoints() {
    let clerk = double(50, &[5, 7]);
    let mut client = client(&clerk, Limits::default());
    clerk.take_requests();
    let some = Filter { user_ids: Some(vec!["user_3".into(), "user_9".into(), "user_3".into()]), ..Filter::default() };
    let found = client.list(Object::Users, &some).unwrap();
    assert_eq!(ids(&found, &["id"]), BTreeSet::from(["user_3".into(), "user_9".into()]));
    let (count, paths) = clerk.take_requests();
    assert_eq!(count, 1, "{paths:?}");
    assert!(paths[0].contains("user_id=user_3") && paths[0].contains("user_id=user_9"), "{paths:?}");

    let org = Filter { organization_ids: Some(vec!["org_1".into(), "org_404".into()]), ..Filter::default() };
    assert_eq!(ids(&client.list(Object::Organizations, &org).unwrap(), &["id"]), BTreeSet::from(["org_1".into()]));
    let of_user = Filter { user_ids: Some(vec!["user_6".into()]), ..Filter::default() };
    let memberships = client.list(Object::OrganizationMemberships, &of_user).unwrap();
    assert_eq!(ids(&memberships, &["organization", "id"]), BTreeSet::from(["org_1".into()]), "user_6 is only in org_1");
    let (_, paths) = clerk.take_requests();
    assert!(paths.iter().any(|p| p.starts_with("/v1/users/user_6/organization_memberships")), "{paths:?}");
    let nothing = Filter { user_ids: Some(vec!["not a clerk id".into()]), ..Filter::default() };
    assert!(client.list(Object::Users, &nothing).unwrap().is_empty());
    assert_eq!(clerk.take_requests().0, 0, "an id Clerk cannot have is not requested");
}

#[test]
fn rate_limits_are_waited_out_as_retry_after_asks() {
    let clerk = double(1200, &[]);
    clerk.set_mode(Mode::Throttle { every: 2, retry_after: 1 });
    let mut client = client(&clerk, Limits::default());
    let started = Instant::now();
    let all = client.list(Object::Users, &Filter::default()).unwrap();
    assert_eq!(ids(&all, &["id"]).len(), 1200);
    assert!(started.elapsed() >= Duration::from_secs(2), "two 429s, one second each");
    assert_eq!(clerk.take_requests().0, 5, "three pages, two retried");
}

#[test]
fn a_persistent_429_gives_up_after_bounded_retries_and_wait() {
    let clerk = double(10, &[]);
    clerk.set_mode(Mode::AlwaysThrottled);
    let limits = Limits { max_retries: 2, ..Limits::default() };
    let error = client(&clerk, limits).list(Object::Users, &Filter::default()).unwrap_err();
    assert!(matches!(error, ClerkError::RateLimited { attempts: 3, .. }), "{error}");
    assert!(error.to_string().contains("GET /users: rate limited (HTTP 429)"), "{error}");
    assert_eq!(clerk.take_requests().0, 3);
    let short_wait = Limits { max_wait: Duration::from_secs(1), ..Limits::default() };
    let error = client(&clerk, short_wait).list(Object::Users, &Filter::default()).unwrap_err();
    assert!(matches!(error, ClerkError::RateLimited { attempts: 2, .. }), "the wait budget ends it first: {error}");
}

#[test]
fn every_other_failure_is_one_error_with_clerks_words_and_no_key() {
    let clerk = double(10, &[1]);
    let wrong_key = Client::new(&clerk.url(), "sk_test_WRONG", Limits::default())
        .unwrap()
        .list(Object::Organizations, &Filter::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        wrong_key,
        "GET /organizations: HTTP 401: Unable to authenticate the request, you need to supply an active API key (authentication_invalid)"
    );
    clerk.set_mode(Mode::ServerError);
    let error = client(&clerk, Limits::default()).list(Object::Users, &Filter::default()).unwrap_err().to_string();
    assert!(error.starts_with("GET /users: HTTP 500: Something went wrong"), "{error}");
    clerk.set_mode(Mode::Malformed);
    let error = client(&clerk, Limits::default()).list(Object::Users, &Filter::default()).unwrap_err().to_string();
    assert!(error.starts_with("GET /users: Clerk's answer is not the expected JSON"), "{error}");
    clerk.take_requests();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut closed = Client::new(&format!("http://127.0.0.1:{port}/v1"), KEY, Limits::default()).unwrap();
    let error = closed.list(Object::OrganizationMemberships, &Filter::default()).unwrap_err().to_string();
    assert!(error.starts_with("GET /organization_memberships: cannot reach Clerk"), "{error}");
    assert_eq!(closed.requests(), 1, "no retry storm against a closed port");
    for message in [wrong_key, error] {
        assert!(!message.contains(KEY) && !message.contains("sk_test_WRONG"), "{message}");
    }
}

#[test]
fn a_server_that_never_stops_paging_hits_the_request_bound() {
    let clerk = double(2000, &[]);
    let limits = Limits { max_requests: 3, ..Limits::default() };
    let error = client(&clerk, limits).list(Object::Users, &Filter::default()).unwrap_err();
    assert_eq!(error, ClerkError::TooManyRequests(3));
}
