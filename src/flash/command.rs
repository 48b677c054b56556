//! RTMP-style commands: a name, a transaction id, a command object, then arguments, all
//! AMF0 (RFC 7425 §5.3; the same shape RTMP uses). Also the info objects `onStatus`,
//! `_result` and `_error` carry.

use super::amf::{decode_amf0_sequence, encode_amf0_sequence, AmfError, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// `null` for most commands; an object for `connect` and for results.
    pub command_object: Value,
    pub arguments: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("command is not valid AMF0: {0}")]
    Amf(#[from] AmfError),
    #[error("command does not start with a name string")]
    NoName,
}

impl Command {
    pub fn new(
        name: &str,
        transaction_id: f64,
        command_object: Value,
        arguments: Vec<Value>,
    ) -> Self {
        Command {
            name: name.to_owned(),
            transaction_id,
            command_object,
            arguments,
        }
    }

    /// Parses AMF0 values: name, then (optionally) transaction id, command object,
    /// arguments. Data messages like `onMetaData` have no transaction id; they parse with
    /// id 0 and every value after the name as arguments.
    pub fn parse(amf0: &[u8]) -> Result<Self, CommandError> {
        let mut values = decode_amf0_sequence(amf0)?.into_iter();
        let name = match values.next() {
            Some(Value::String(s)) => s,
            _ => return Err(CommandError::NoName),
        };
        let rest: Vec<Value> = values.collect();
        match rest.first() {
            Some(Value::Number(id)) => {
                let id = *id;
                let mut rest = rest.into_iter().skip(1);
                let command_object = rest.next().unwrap_or(Value::Null);
                Ok(Command {
                    name,
                    transaction_id: id,
                    command_object,
                    arguments: rest.collect(),
                })
            }
            _ => Ok(Command {
                name,
                transaction_id: 0.0,
                command_object: Value::Null,
                arguments: rest,
            }),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let head = [
            Value::String(self.name.clone()),
            Value::Number(self.transaction_id),
            self.command_object.clone(),
        ];
        let mut out = Vec::new();
        // Values we build are never too long for AMF0 (strings under 4 GiB).
        if encode_amf0_sequence(head.iter().chain(self.arguments.iter()), &mut out).is_err() {
            out.clear();
        }
        out
    }

    pub fn argument(&self, index: usize) -> Option<&Value> {
        self.arguments.get(index)
    }
}

/// The level of an info object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Status,
    Error,
    Warning,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Status => "status",
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// An info object: `{level, code, description}` plus extra properties.
pub fn info(level: Level, code: &str, description: &str, extra: Vec<(&str, Value)>) -> Value {
    let mut props: Vec<(String, Value)> = vec![
        ("level".into(), level.as_str().into()),
        ("code".into(), code.into()),
        ("description".into(), description.into()),
    ];
    props.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
    Value::object(props)
}

/// `onStatus(0, null, info)`, what NetStreams receive.
pub fn on_status(
    level: Level,
    code: &str,
    description: &str,
    extra: Vec<(&str, Value)>,
) -> Command {
    Command::new(
        "onStatus",
        0.0,
        Value::Null,
        vec![info(level, code, description, extra)],
    )
}

/// The status codes clients wait for.
pub mod code {
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    pub const CONNECT_INVALID_APP: &str = "NetConnection.Connect.InvalidApp";
    pub const CONNECT_CLOSED: &str = "NetConnection.Connect.Closed";
    /// The server application is shutting down (sent before the server closes).
    pub const CONNECT_APP_SHUTDOWN: &str = "NetConnection.Connect.AppShutdown";
    pub const CONNECT_FAILED: &str = "NetConnection.Connect.Failed";
    pub const CALL_FAILED: &str = "NetConnection.Call.Failed";
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    pub const PUBLISH_DENIED: &str = "NetStream.Publish.Denied";
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    pub const PLAY_START: &str = "NetStream.Play.Start";
    pub const PLAY_STOP: &str = "NetStream.Play.Stop";
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
}

/// The string of an info object's `code`, wherever a command carries it.
pub fn status_code(command: &Command) -> Option<&str> {
    command
        .arguments
        .iter()
        .chain(std::iter::once(&command.command_object))
        .find_map(|v| v.get("code").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_round_trips_with_its_extra_arguments() {
        let c = Command::new(
            "connect",
            1.0,
            Value::object([
                ("app", Value::from("live")),
                ("tcUrl", "rtmfp://127.0.0.1/live".into()),
                ("objectEncoding", 3.0.into()),
            ]),
            vec!["secret-token".into()],
        );
        let bytes = c.encode();
        assert_eq!(&bytes[..10], b"\x02\x00\x07connect");
        let back = Command::parse(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(
            back.command_object.get("app").unwrap().as_str(),
            Some("live")
        );
    }

    #[test]
    fn data_messages_without_a_transaction_id_parse_as_arguments() {
        let mut bytes = Vec::new();
        encode_amf0_sequence(
            &[
                Value::from("onMetaData"),
                Value::ecma_array([("width", Value::from(320.0))]),
            ],
            &mut bytes,
        )
        .unwrap();
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.name, "onMetaData");
        assert_eq!(c.arguments.len(), 1);
    }

    #[test]
    fn status_code_is_found_in_on_status_and_in_results() {
        let s = on_status(
            Level::Status,
            code::PLAY_START,
            "Started playing demo.",
            vec![],
        );
        assert_eq!(
            status_code(&Command::parse(&s.encode()).unwrap()),
            Some(code::PLAY_START)
        );
        let r = Command::new(
            "_result",
            1.0,
            Value::object([("fmsVer", Value::from("x"))]),
            vec![info(Level::Status, code::CONNECT_SUCCESS, "ok", vec![])],
        );
        assert_eq!(status_code(&r), Some(code::CONNECT_SUCCESS));
        assert!(matches!(
            Command::parse(b"\x00\x3f\xf0\0\0\0\0\0\0"),
            Err(CommandError::NoName)
        ));
        assert!(matches!(
            Command::parse(b"\x02\x00\x09conn"),
            Err(CommandError::Amf(_))
        ));
    }
}
