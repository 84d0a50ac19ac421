//! Kubernetes errors as people read them: one line with the API server's own message, reason
//! and code. kube's `Display` embeds the whole `Status` struct's debug dump, which is what
//! reached status conditions, Events and logs before.

use std::error::Error as _;

/// `secrets "cp" is forbidden: ... (Forbidden, 403)`; for transport failures the error chain,
/// `: `-joined. Always a single line.
pub fn one_line(error: &kube::Error) -> String {
    let text = match error {
        kube::Error::Api(status) => {
            let message =
                if status.message.is_empty() { "the API server refused the request" } else { &status.message };
            match (status.reason.as_str(), status.code) {
                ("", 0) => message.to_string(),
                ("", code) => format!("{message} ({code})"),
                (reason, 0) => format!("{message} ({reason})"),
                (reason, code) => format!("{message} ({reason}, {code})"),
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = other.source();
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text = format!("{text}: {cause}");
                }
                source = source.and_then(|s| s.source());
            }
            text
        }
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A watch's failure, one line: `list of statefulsets failed: ... (Forbidden, 403)`.
pub fn watch_error(error: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error;
    match error {
        Error::InitialListFailed(e) => format!("initial list failed: {}", one_line(e)),
        Error::WatchStartFailed(e) => format!("starting the watch failed: {}", one_line(e)),
        Error::WatchFailed(e) => format!("the watch failed: {}", one_line(e)),
        Error::WatchError(status) => format!("the watch failed: {}", one_line(&kube::Error::Api(status.clone()))),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(json: serde_json::Value) -> kube::Error {
        kube::Error::Api(Box::new(serde_json::from_value(json).unwrap()))
    }

    #[test]
    fn an_api_refusal_is_its_message_reason_and_code() {
        let error = api_error(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secrets \"cp\" is forbidden: User \"system:serviceaccount:ops:pgw\" cannot get resource \"secrets\" in API group \"\" in the namespace \"analytics\"",
            "reason": "Forbidden", "details": {"name": "cp", "kind": "secrets"}, "code": 403}));
        assert_eq!(
            one_line(&error),
            "secrets \"cp\" is forbidden: User \"system:serviceaccount:ops:pgw\" cannot get resource \"secrets\" in API group \"\" in the namespace \"analytics\" (Forbidden, 403)"
        );
        assert!(!error.to_string().starts_with("secrets"), "kube's own Display is the dump this replaces");
    }

    #[test]
    fn a_failed_watch_is_one_line_too() {
        let forbidden = api_error(
            serde_json::json!({"message": "statefulsets.apps is forbidden", "reason": "Forbidden", "code": 403}),
        );
        let error = kube::runtime::watcher::Error::InitialListFailed(forbidden);
        assert_eq!(watch_error(&error), "initial list failed: statefulsets.apps is forbidden (Forbidden, 403)");
    }

    #[test]
    fn partial_statuses_and_transport_errors_stay_on_one_line() {
        assert_eq!(one_line(&api_error(serde_json::json!({"code": 500}))), "the API server refused the request (500)");
        assert_eq!(
            one_line(&api_error(serde_json::json!({"message": "gone\nfor good", "reason": "Gone"}))),
            "gone for good (Gone)"
        );
        let transport = kube::Error::Service("tcp connect error: Connection refused (os error 111)".into());
        assert_eq!(one_line(&transport), "ServiceError: tcp connect error: Connection refused (os error 111)");
    }
}
