//! COPY ... FROM STDIN: the CopyIn sub-protocol, and the text and CSV row formats.
//!
//! The client's CopyData messages are gathered until CopyDone, split into rows and
//! fields, and handed to the session, which inserts them in batches.

use cairn_sql::error::{Error, SqlState};
use cairn_sql::session::Session;
use cairn_sql::sqlparser::ast;
use pgwire::messages::copy::CopyInResponse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{Conn, ConnError, complete, error_response};

/// How rows are written.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: char,
    pub null: String,
    pub header: bool,
    pub quote: char,
}

impl Default for CopyFormat {
    fn default() -> Self {
        CopyFormat {
            csv: false,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
        }
    }
}

pub fn is_copy_from_stdin(stmt: &ast::Statement) -> bool {
    matches!(
        stmt,
        ast::Statement::Copy {
            to: false,
            target: ast::CopyTarget::Stdin,
            source: ast::CopySource::Table { .. },
            ..
        }
    )
}

fn format_of(
    options: &[ast::CopyOption],
    legacy: &[ast::CopyLegacyOption],
) -> Result<CopyFormat, Error> {
    let mut f = CopyFormat::default();
    let set_csv = |f: &mut CopyFormat| {
        f.csv = true;
        f.delimiter = ',';
        f.null = String::new();
    };
    for o in options {
        if let ast::CopyOption::Format(name) = o {
            match name.value.to_ascii_lowercase().as_str() {
                "csv" => set_csv(&mut f),
                "text" => {}
                other => {
                    return Err(Error::new(
                        SqlState::FeatureNotSupported,
                        format!("COPY format \"{other}\" is not supported"),
                    ));
                }
            }
        }
    }
    for o in legacy {
        if let ast::CopyLegacyOption::Csv(opts) = o {
            set_csv(&mut f);
            for c in opts {
                match c {
                    ast::CopyLegacyCsvOption::Header => f.header = true,
                    ast::CopyLegacyCsvOption::Quote(q) => f.quote = *q,
                    _ => {}
                }
            }
        }
    }
    for o in options {
        match o {
            ast::CopyOption::Delimiter(d) => f.delimiter = *d,
            ast::CopyOption::Null(n) => f.null = n.clone(),
            ast::CopyOption::Header(h) => f.header = *h,
            ast::CopyOption::Quote(q) => f.quote = *q,
            _ => {}
        }
    }
    for o in legacy {
        match o {
            ast::CopyLegacyOption::Delimiter(d) => f.delimiter = *d,
            ast::CopyLegacyOption::Null(n) => f.null = n.clone(),
            ast::CopyLegacyOption::Header => f.header = true,
            _ => {}
        }
    }
    Ok(f)
}

/// Splits COPY input into rows of fields (None: NULL).
pub fn parse_rows(data: &str, f: &CopyFormat) -> Result<Vec<Vec<Option<String>>>, Error> {
    let mut rows = Vec::new();
    if f.csv {
        let mut field = String::new();
        let mut row: Vec<Option<String>> = Vec::new();
        let mut quoted = false;
        let mut was_quoted = false;
        let mut chars = data.chars().peekable();
        let mut any = false;
        while let Some(c) = chars.next() {
            any = true;
            if quoted {
                if c == f.quote {
                    if chars.peek() == Some(&f.quote) {
                        field.push(c);
                        chars.next();
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(c);
                }
            } else if c == f.quote {
                quoted = true;
                was_quoted = true;
            } else if c == f.delimiter || c == '\n' || c == '\r' {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                let v = std::mem::take(&mut field);
                row.push(if !was_quoted && v == f.null {
                    None
                } else {
                    Some(v)
                });
                was_quoted = false;
                if c != f.delimiter {
                    rows.push(std::mem::take(&mut row));
                    any = false;
                }
            } else {
                field.push(c);
            }
        }
        if quoted {
            return Err(Error::new(
                SqlState::DataException,
                "unterminated CSV quoted field",
            ));
        }
        if any {
            let v = field;
            row.push(if !was_quoted && v == f.null {
                None
            } else {
                Some(v)
            });
            rows.push(row);
        }
    } else {
        for line in data.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line == "\\." {
                continue;
            }
            let mut row = Vec::new();
            for raw in line.split(f.delimiter) {
                if raw == f.null {
                    row.push(None);
                } else {
                    row.push(Some(unescape_text(raw)?));
                }
            }
            rows.push(row);
        }
    }
    if f.header && !rows.is_empty() {
        rows.remove(0);
    }
    Ok(rows)
}

/// The text format's backslash escapes.
fn unescape_text(s: &str) -> Result<String, Error> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some('\\') => out.push('\\'),
            Some(other) => out.push(other),
            None => {
                return Err(Error::new(
                    SqlState::DataException,
                    "end-of-copy marker corrupt",
                ));
            }
        }
    }
    Ok(out)
}

impl Conn {
    /// Runs a COPY FROM STDIN: the outer error ends the connection, the inner one
    /// is the statement's.
    pub(super) async fn copy_in(
        &mut self,
        session: &mut Session,
        stmt: &ast::Statement,
    ) -> Result<Result<(), Error>, ConnError> {
        let ast::Statement::Copy {
            source:
                ast::CopySource::Table {
                    table_name,
                    columns,
                },
            options,
            legacy_options,
            ..
        } = stmt
        else {
            return Ok(Err(Error::new(
                SqlState::InternalError,
                "not a COPY FROM STDIN",
            )));
        };
        let format = match format_of(options, legacy_options) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let width = match session.copy_columns(table_name, columns).await {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        self.send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
            0,
            width as i16,
            vec![0; width],
        )))
        .await?;
        self.flush().await?;
        let mut data = Vec::new();
        loop {
            match self.read().await? {
                Some(PgWireFrontendMessage::CopyData(d)) => data.extend_from_slice(&d.data),
                Some(PgWireFrontendMessage::CopyDone(_)) => break,
                Some(PgWireFrontendMessage::CopyFail(f)) => {
                    return Ok(Err(Error::new(
                        SqlState::QueryCanceled,
                        format!("COPY from stdin failed: {}", f.message),
                    )));
                }
                // Clients may pipeline a Flush or Sync after the COPY statement.
                Some(PgWireFrontendMessage::Flush(_)) | Some(PgWireFrontendMessage::Sync(_)) => {}
                Some(other) => {
                    let e = Error::new(
                        SqlState::ProtocolViolation,
                        format!("unexpected message during COPY: {other:?}"),
                    );
                    self.send(error_response(&e, "ERROR")).await?;
                    return Err(ConnError::Protocol("unexpected message during COPY".into()));
                }
                None => return Ok(Ok(())),
            }
        }
        let text = match String::from_utf8(data) {
            Ok(t) => t,
            Err(_) => {
                return Ok(Err(Error::new(
                    SqlState::InvalidTextRepresentation,
                    "invalid byte sequence for encoding \"UTF8\"",
                )));
            }
        };
        let rows = match parse_rows(&text, &format) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        match session.copy_from(table_name, columns, rows).await {
            Ok(n) => {
                self.send(complete(format!("COPY {n}"))).await?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_rows() {
        let f = CopyFormat::default();
        let rows = parse_rows("1\ta\\tb\t\\N\n2\tx\ty\n\\.\n", &f).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("a\tb".into()), None],
                vec![Some("2".into()), Some("x".into()), Some("y".into())],
            ]
        );
    }

    #[test]
    fn csv_rows_with_quotes_and_header() {
        let f = CopyFormat {
            csv: true,
            delimiter: ',',
            null: String::new(),
            header: true,
            quote: '"',
        };
        let rows = parse_rows("a,b,c\n1,\"x,\"\"y\"\"\",\n2,\"\",z", &f).unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("x,\"y\"".into()), None],
                vec![Some("2".into()), Some(String::new()), Some("z".into())],
            ]
        );
        assert!(parse_rows("\"open", &f).is_err());
    }
}
