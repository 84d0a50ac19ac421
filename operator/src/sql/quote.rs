//! The one audited place where text becomes SQL.
//!
//! Every identifier and literal the engine sends is produced here. A [`Sql`] is built only from
//! static fragments, quoted identifiers and literals, validated type names, bind parameters and
//! secrets; secrets render as `'<redacted>'` everywhere but in the text handed to the database.

use std::fmt;

/// `name` as a Postgres identifier: always double-quoted, embedded quotes doubled.
/// Names are validated free of NUL before they get here.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.name`, each part quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `value` as a Postgres string literal, correct whatever `standard_conforming_strings` is.
pub fn literal(value: &str) -> String {
    let doubled = value.replace('\'', "''");
    if value.contains('\\') { format!("E'{}'", doubled.replace('\\', "\\\\")) } else { format!("'{doubled}'") }
}

const REDACTED: &str = "'<redacted>'";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Trusted(String),
    Secret(String),
    Param(String),
}

/// A statement under construction; see the module docs for what may go in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sql {
    parts: Vec<Part>,
}

/// A Postgres type name that passed [`crate::validate`]'s grammar check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeName(String);

impl TypeName {
    /// Accepts `word[.word][ word...][(n[, n])][[]...]`: every type spelling users write, and
    /// nothing that can close a clause.
    pub fn parse(text: &str) -> Option<TypeName> {
        let text = text.trim();
        let (head, suffix) = match text.find(['(', '[']) {
            Some(at) => text.split_at(at),
            None => (text, ""),
        };
        let word_ok = |w: &str| {
            w.split('.').all(|part| {
                part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        let head_ok = !head.trim().is_empty() && head.split_whitespace().all(word_ok);
        let mut rest = suffix.trim_start();
        if let Some(inner) = rest.strip_prefix('(') {
            let close = inner.find(')')?;
            let args = &inner[..close];
            let args_ok = args.split(',').all(|a| !a.trim().is_empty() && a.trim().chars().all(|c| c.is_ascii_digit()));
            if !args_ok {
                return None;
            }
            rest = inner[close + 1..].trim_start();
        }
        // Only `with(out) time zone` may follow a modifier, e.g. `timestamp(3) with time zone`.
        let (tail_words, arrays) = match rest.find('[') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let tail_ok = tail_words.split_whitespace().all(word_ok);
        let arrays_ok =
            arrays.replace(' ', "").split_terminator("[]").all(str::is_empty) && arrays.replace(' ', "").len() % 2 == 0;
        (head_ok && tail_ok && arrays_ok).then(|| TypeName(canonical_type(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The spelling `format_type()` reports, so declared and observed columns compare equal.
pub fn canonical_type(text: &str) -> String {
    let lower = text.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    let (base, rest) = match lower.find(['(', '[']) {
        Some(at) => (lower[..at].trim_end().to_string(), lower[at..].replace(' ', "")),
        None => (lower.clone(), String::new()),
    };
    let base = match base.as_str() {
        "int8" | "bigserial" | "serial8" => "bigint",
        "int" | "int4" | "serial" | "serial4" => "integer",
        "int2" | "smallserial" | "serial2" => "smallint",
        "float8" | "float" => "double precision",
        "float4" => "real",
        "bool" => "boolean",
        "varchar" => "character varying",
        "char" | "bpchar" => "character",
        "decimal" => "numeric",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        "timetz" => "time with time zone",
        "time" => "time without time zone",
        other => other,
    };
    // `timestamp(3) with time zone` keeps its zone words after the modifier.
    if let Some(zone_at) = rest.find("withtimezone").or_else(|| rest.find("withouttimezone")) {
        let (modifier, zone) = rest.split_at(zone_at);
        let zone = if zone.starts_with("without") { "without time zone" } else { "with time zone" };
        let base = base.trim_end_matches(" without time zone").trim_end_matches(" with time zone");
        return format!("{base}{modifier} {zone}");
    }
    match base.split_once(" with") {
        Some((head, zone)) if !rest.is_empty() && !rest.starts_with('[') => {
            format!("{head}{rest} with{zone}")
        }
        _ => format!("{base}{rest}"),
    }
}

impl Sql {
    /// Starts a statement with a fixed fragment of SQL text.
    pub fn new(fragment: &'static str) -> Sql {
        Sql { parts: vec![Part::Trusted(fragment.to_string())] }
    }

    /// Appends a fixed fragment.
    pub fn push(mut self, fragment: &'static str) -> Sql {
        self.parts.push(Part::Trusted(fragment.to_string()));
        self
    }

    pub fn ident(mut self, name: &str) -> Sql {
        self.parts.push(Part::Trusted(ident(name)));
        self
    }

    pub fn qualified(mut self, schema: &str, name: &str) -> Sql {
        self.parts.push(Part::Trusted(qualified(schema, name)));
        self
    }

    pub fn literal(mut self, value: &str) -> Sql {
        self.parts.push(Part::Trusted(literal(value)));
        self
    }

    /// A literal whose value must never be shown.
    pub fn secret(mut self, value: &str) -> Sql {
        self.parts.push(Part::Secret(value.to_string()));
        self
    }

    /// A bind parameter (`$n`), sent apart from the statement text.
    pub fn param(mut self, value: &str) -> Sql {
        self.parts.push(Part::Param(value.to_string()));
        self
    }

    pub fn type_name(mut self, type_name: &TypeName) -> Sql {
        self.parts.push(Part::Trusted(type_name.0.clone()));
        self
    }

    /// Appends another statement's parts.
    pub fn append(mut self, other: Sql) -> Sql {
        self.parts.extend(other.parts);
        self
    }

    /// Appends `items` separated by `separator`.
    pub fn join(mut self, items: impl IntoIterator<Item = Sql>, separator: &'static str) -> Sql {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.parts.push(Part::Trusted(separator.to_string()));
            }
            self.parts.extend(item.parts);
        }
        self
    }

    /// A migration's own SQL: the user's code, run as written because running it is the point.
    pub fn user_script(script: &str) -> Sql {
        Sql { parts: vec![Part::Trusted(script.to_string())] }
    }

    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Secret(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The text sent to the database and its bind parameters. Only `apply` calls this.
    pub(crate) fn expose(&self) -> (String, Vec<&str>) {
        let mut text = String::new();
        let mut params = Vec::new();
        for part in &self.parts {
            match part {
                Part::Trusted(t) => text.push_str(t),
                Part::Secret(s) => text.push_str(&literal(s)),
                Part::Param(p) => {
                    params.push(p.as_str());
                    text.push_str(&format!("${}", params.len()));
                }
            }
        }
        (text, params)
    }
}

/// The reviewable form: parameters inlined as literals, secrets as `'<redacted>'`.
impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Trusted(t) => f.write_str(t)?,
                Part::Secret(_) => f.write_str(REDACTED)?,
                Part::Param(p) => f.write_str(&literal(p))?,
            }
        }
        Ok(())
    }
}

/// Removes every secret of `statements` from a message (a database error may quote its input).
pub fn scrub<'a>(message: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    secrets.into_iter().filter(|s| !s.is_empty()).fold(message.to_string(), |m, secret| m.replace(secret, "<redacted>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_round_trip_as_data() {
        assert_eq!(ident(r#"we"ird; DROP"#), r#""we""ird; DROP""#);
        assert_eq!(qualified("f", "t"), r#""f"."t""#);
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\'; --"), r"E'a\\''; --'");
    }

    #[test]
    fn secrets_are_redacted_except_when_exposed() {
        let sql = Sql::new("ALTER SERVER ").ident("s").push(" OPTIONS (SET password ").secret("hunter2").push(")");
        assert_eq!(sql.to_string(), r#"ALTER SERVER "s" OPTIONS (SET password '<redacted>')"#);
        assert_eq!(sql.expose().0, r#"ALTER SERVER "s" OPTIONS (SET password 'hunter2')"#);
        assert_eq!(scrub("bad hunter2 here", sql.secrets()), "bad <redacted> here");
    }

    #[test]
    fn params_bind_in_order_and_display_inline() {
        let sql = Sql::new("SELECT cron.schedule(").param("job").push(", ").param("it's").push(")");
        assert_eq!(sql.expose(), ("SELECT cron.schedule($1, $2)".to_string(), vec!["job", "it's"]));
        assert_eq!(sql.to_string(), "SELECT cron.schedule('job', 'it''s')");
    }

    #[test]
    fn type_names_accept_real_spellings_and_refuse_clauses() {
        for (given, canonical) in [
            ("bigint", "bigint"),
            ("int8", "bigint"),
            ("varchar(64)", "character varying(64)"),
            ("numeric(10, 2)", "numeric(10,2)"),
            ("timestamptz", "timestamp with time zone"),
            ("timestamp(3) with time zone", "timestamp(3) with time zone"),
            ("text[]", "text[]"),
            ("double precision", "double precision"),
            ("public.my_type", "public.my_type"),
        ] {
            assert_eq!(TypeName::parse(given).map(|t| t.0), Some(canonical.to_string()), "{given}");
        }
        for bad in ["int) SERVER x OPTIONS (a", "text; DROP TABLE t", "int, evil text", "", "a'b", "int(1"] {
            assert_eq!(TypeName::parse(bad), None, "{bad}");
        }
    }
}
