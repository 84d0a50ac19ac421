//! Reading a `query_range` answer: a matrix of series, each with its labels and its
//! `[time, "value"]` points, or Prometheus's own error.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One series of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Every label, `__name__` included when the series has one.
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

/// Parses the body of `GET /api/v1/query_range` (success or error, whatever the HTTP status).
pub fn parse_range_response(body: &[u8]) -> Result<Vec<Series>, ResponseError> {
    let mut series = Vec::new();
    parse_range_response_each(body, &mut |one| {
        series.push(one);
        true
    })?;
    Ok(series)
}

/// [`parse_range_response`] handing each series to `each` as soon as it is read, so rows can
/// flow while the rest of the answer is parsed; `each` returns `false` to stop early.
pub fn parse_range_response_each(body: &[u8], each: &mut dyn FnMut(Series) -> bool) -> Result<(), ResponseError> {
    parse(&mut serde_json::Deserializer::from_slice(body), each)
}

/// [`parse_range_response_each`] reading the answer as it arrives: only the series being read
/// is held, however large the answer.
pub fn parse_range_stream(body: impl std::io::Read, each: &mut dyn FnMut(Series) -> bool) -> Result<(), ResponseError> {
    parse(&mut serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, body)), each)
}

fn parse<'de, R: serde_json::de::Read<'de>>(
    deserializer: &mut serde_json::Deserializer<R>,
    each: &mut dyn FnMut(Series) -> bool,
) -> Result<(), ResponseError> {
    let envelope = EnvelopeSeed { each }.deserialize(deserializer);
    let envelope = envelope.map_err(|e| ResponseError::Malformed(e.to_string()))?;
    if envelope.status != "success" {
        return Err(ResponseError::Prometheus {
            error_type: envelope.error_type.unwrap_or(envelope.status),
            message: envelope.error.unwrap_or_default(),
        });
    }
    match envelope.result_type.as_deref() {
        Some("matrix") => Ok(()),
        Some(other) => Err(ResponseError::Malformed(format!("resultType {other:?}, not matrix"))),
        None => Err(ResponseError::Malformed("no data".into())),
    }
}

/// The envelope's fields but `data.result`, which went to `each`.
#[derive(Default)]
struct Envelope {
    status: String,
    result_type: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
}

struct EnvelopeSeed<'f> {
    each: &'f mut dyn FnMut(Series) -> bool,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Envelope;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Envelope, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Envelope;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Prometheus API answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "status" => envelope.status = map.next_value()?,
                "errorType" => envelope.error_type = map.next_value()?,
                "error" => envelope.error = map.next_value()?,
                "data" => envelope.result_type = map.next_value_seed(DataSeed { each: &mut *self.each })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// `data`: its `resultType`, its `result` series handed out one by one.
struct DataSeed<'f> {
    each: &'f mut dyn FnMut(Series) -> bool,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<String>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a query_range result")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut result_type = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "resultType" => result_type = Some(map.next_value()?),
                "result" => map.next_value_seed(ResultSeed { each: &mut *self.each })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(result_type)
    }
}

struct ResultSeed<'f> {
    each: &'f mut dyn FnMut(Series) -> bool,
}

impl<'de> DeserializeSeed<'de> for ResultSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of series")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<RawSeries>()? {
            let series =
                Series { labels: raw.metric, points: raw.values.into_iter().map(|Point(t, v)| (t, v)).collect() };
            if !(self.each)(series) {
                return Err(serde::de::Error::custom("the reader stopped"));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawSeries {
    metric: Map<String, Value>,
    #[serde(default)]
    values: Vec<Point>,
}

/// `[time, "value"]`, the value parsed where it is read: no allocation per point.
struct Point(f64, f64);

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Point, D::Error> {
        deserializer.deserialize_seq(PointVisitor)
    }
}

struct PointVisitor;

impl<'de> Visitor<'de> for PointVisitor {
    type Value = Point;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a [time, \"value\"] pair")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
        let time: f64 = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
        let SampleValue(value) = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(1, &self))?;
        Ok(Point(time, value))
    }
}

/// A sample's value, sent as a string (`"1.5"`, `"NaN"`, `"+Inf"`), parsed without a copy.
struct SampleValue(f64);

impl<'de> Deserialize<'de> for SampleValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SampleValue, D::Error> {
        deserializer.deserialize_str(SampleValueVisitor)
    }
}

struct SampleValueVisitor;

impl Visitor<'_> for SampleValueVisitor {
    type Value = SampleValue;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sample value as a string")
    }
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<SampleValue, E> {
        value.parse().map(SampleValue).map_err(|_| E::custom(format!("sample value {value:?} is not a number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matrix_becomes_series_with_their_labels_and_exact_points() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"node","instance":"a:9100"},"values":[[1700000000.125,"1"],[1700000060,"0"]]},
            {"metric":{"job":"api"},"values":[[1700000000,"NaN"],[1700000001,"+Inf"],[1700000002,"-2.5e3"]]}]}}"#;
        let series = parse_range_response(body).unwrap();
        assert_eq!(
            series[0].labels,
            serde_json::json!({"__name__": "up", "job": "node", "instance": "a:9100"}).as_object().unwrap().clone()
        );
        assert_eq!(series[0].points, [(1_700_000_000.125, 1.0), (1_700_000_060.0, 0.0)]);
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
                ResponseError::Malformed("sample value \"x\" is not a number at line 1 column 89".into()),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_range_response(body).unwrap_err(), *expected);
        }
    }

    #[test]
    fn a_stream_gives_the_series_a_slice_gives() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"a"},"values":[[1,"1"],[2,"2"]]},{"metric":{"job":"b"},"values":[[1,"3"]]}]}}"#;
        let mut streamed = Vec::new();
        parse_range_stream(&body[..], &mut |one| {
            streamed.push(one);
            true
        })
        .unwrap();
        assert_eq!(streamed, parse_range_response(body).unwrap());
    }

    #[test]
    fn an_empty_matrix_is_no_series() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_range_response(body).unwrap(), []);
    }
}
