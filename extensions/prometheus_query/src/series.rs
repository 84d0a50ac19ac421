//! Reading a `query_range` answer: a matrix of series, each with its labels and its
//! `[time, "value"]` points, or Prometheus's own error.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One series of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric's `__name__`, or the query itself for an expression without one.
    pub name: String,
    /// Every label but `__name__`.
    pub labels: Map<String, Value>,
    /// `(epoch seconds, value)`, in time order.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseError {
    #[error("Prometheus answered {error_type}: {message}")]
    Prometheus { error_type: String, message: String },
    #[error("Prometheus's answer is not a query_range result: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    metric: Map<String, Value>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Parses the body of `GET /api/v1/query_range` (success or error, whatever the HTTP status).
pub fn parse_range_response(body: &[u8], query: &str) -> Result<Vec<Series>, ResponseError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| ResponseError::Malformed(e.to_string()))?;
    if envelope.status != "success" {
        return Err(ResponseError::Prometheus {
            error_type: envelope.error_type.unwrap_or_else(|| envelope.status.clone()),
            message: envelope.error.unwrap_or_default(),
        });
    }
    let data = envelope.data.ok_or_else(|| ResponseError::Malformed("no data".into()))?;
    if data.result_type != "matrix" {
        return Err(ResponseError::Malformed(format!("resultType {:?}, not matrix", data.result_type)));
    }
    data.result
        .into_iter()
        .map(|raw| {
            let mut labels = raw.metric;
            let name = match labels.remove("__name__") {
                Some(Value::String(name)) => name,
                _ => query.to_string(),
            };
            let points = raw
                .values
                .into_iter()
                .map(|(time, value)| {
                    value
                        .parse::<f64>()
                        .map(|value| (time, value))
                        .map_err(|_| ResponseError::Malformed(format!("sample value {value:?} is not a number")))
                })
                .collect::<Result<_, _>>()?;
            Ok(Series { name, labels, points })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_becomes_series_with_their_labels_and_exact_points() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"node","instance":"a:9100"},"values":[[1700000000.125,"1"],[1700000060,"0"]]},
            {"metric":{"job":"api"},"values":[[1700000000,"NaN"],[1700000001,"+Inf"],[1700000002,"-2.5e3"]]}]}}"#;
        let series = parse_range_response(body, "up or sum by (job) (x)").unwrap();
        assert_eq!(series[0].name, "up");
        assert_eq!(
            series[0].labels,
            serde_json::json!({"job": "node", "instance": "a:9100"}).as_object().unwrap().clone()
        );
        assert_eq!(series[0].points, [(1_700_000_000.125, 1.0), (1_700_000_060.0, 0.0)]);
        assert_eq!(series[1].name, "up or sum by (job) (x)", "an expression without __name__ is named by the query");
        assert!(series[1].points[0].1.is_nan());
        assert_eq!(series[1].points[1].1, f64::INFINITY);
        assert_eq!(series[1].points[2].1, -2500.0);
    }

    #[test]
    fn errors_carry_prometheus_own_words() {
        let cases: &[(&[u8], ResponseError)] = &[
            (
                br#"{"status":"error","errorType":"bad_data","error":"1:4: parse error: unexpected end of input"}"#,
                ResponseError::Prometheus {
                    error_type: "bad_data".into(),
                    message: "1:4: parse error: unexpected end of input".into(),
                },
            ),
            (b"<html>502 Bad Gateway</html>", ResponseError::Malformed("expected value at line 1 column 1".into())),
            (
                br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                ResponseError::Malformed("resultType \"vector\", not matrix".into()),
            ),
            (
                br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#,
                ResponseError::Malformed("sample value \"x\" is not a number".into()),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_range_response(body, "up").unwrap_err(), *expected);
        }
    }

    #[test]
    fn an_empty_matrix_is_no_series() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_range_response(body, "up").unwrap(), []);
    }
}
