//! What a client names when it connects or publishes, split into the name and its query.
//!
//! Flash clients put everything into strings: the `app` of the NetConnection `connect`
//! command may be `live`, `live/`, `live/_definst_` or `live?token=abc`, the `tcUrl` is
//! `rtmfp://host:1935/live?token=abc`, and encoders append `?token=...` to stream names. A
//! token may also come as the first extra argument after the command object, as in
//! `nc.connect(url, "s3cret")`.

use std::borrow::Cow;

/// The query parameter that carries a token in a tcUrl, an app or a stream name.
pub const TOKEN_PARAM: &str = "token";

/// The query part of a name (after `?`, without it): `key=value` pairs joined by `&`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query<'a>(&'a str);

impl<'a> Query<'a> {
    pub fn new(query: &'a str) -> Query<'a> {
        Query(query)
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// The pairs in order, `%XX` decoded. A `+` stays a `+`: tokens are often base64, and
    /// Flash clients send the query as typed.
    pub fn pairs(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> {
        self.0
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(pair), Cow::Borrowed("")),
            })
    }

    /// The value of the first `key`.
    pub fn get(&self, key: &str) -> Option<Cow<'a, str>> {
        self.pairs().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The `token` parameter, if present and not empty.
    pub fn token(&self) -> Option<Cow<'a, str>> {
        self.get(TOKEN_PARAM).filter(|t| !t.is_empty())
    }
}

/// The `app` of a connect: `live/_definst_?token=abc` is app `live`, instance `_definst_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedApp<'a> {
    /// What `[[app]] name` is matched against.
    pub name: &'a str,
    /// The path after the app name without its slashes; empty for most clients.
    pub instance: &'a str,
    pub query: Query<'a>,
}

impl<'a> RequestedApp<'a> {
    pub fn parse(app: &'a str) -> RequestedApp<'a> {
        let (path, query) = split_query(app);
        let path = path.trim_matches('/');
        let (name, instance) = path.split_once('/').unwrap_or((path, ""));
        RequestedApp {
            name,
            instance: instance.trim_matches('/'),
            query,
        }
    }

    /// The app named by a tcUrl: the path after `scheme://host[:port]/`.
    pub fn from_tc_url(tc_url: &'a str) -> RequestedApp<'a> {
        let rest = match tc_url.find("://") {
            Some(at) => &tc_url[at + 3..],
            None => tc_url,
        };
        let path = rest.find(['/', '?']).map_or("", |at| &rest[at..]);
        RequestedApp::parse(path)
    }
}

/// A stream name as sent with `publish` or `play`: `cam1?token=abc` is stream `cam1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestedStream<'a> {
    pub name: &'a str,
    pub query: Query<'a>,
}

impl<'a> RequestedStream<'a> {
    pub fn parse(stream: &'a str) -> RequestedStream<'a> {
        let (name, query) = split_query(stream);
        RequestedStream { name, query }
    }
}

/// The parts of a NetConnection `connect` command that name the app and carry a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectRequest<'a> {
    /// The command object's `app`.
    pub app: Option<&'a str>,
    /// The command object's `tcUrl`.
    pub tc_url: Option<&'a str>,
    /// The first argument after the command object, when it is a string.
    pub first_extra_arg: Option<&'a str>,
}

impl<'a> ConnectRequest<'a> {
    /// The app asked for: from `app`, or from the tcUrl's path when `app` is missing or
    /// empty (some clients send only the tcUrl).
    pub fn app(&self) -> RequestedApp<'a> {
        match self.app.map(RequestedApp::parse) {
            Some(app) if !app.name.is_empty() => app,
            _ => RequestedApp::from_tc_url(self.tc_url.unwrap_or("")),
        }
    }

    /// The token offered, looked for in this order: the first extra argument, the `app`'s
    /// query, the tcUrl's query. Empty strings count as no token.
    pub fn token(&self) -> Option<Cow<'a, str>> {
        if let Some(arg) = self.first_extra_arg.filter(|a| !a.is_empty()) {
            return Some(Cow::Borrowed(arg));
        }
        let from_app = self.app.and_then(|a| RequestedApp::parse(a).query.token());
        from_app.or_else(|| {
            self.tc_url
                .and_then(|u| RequestedApp::from_tc_url(u).query.token())
        })
    }
}

fn split_query(s: &str) -> (&str, Query<'_>) {
    let s = s.split_once('#').map_or(s, |(before, _)| before);
    match s.split_once('?') {
        Some((name, query)) => (name, Query(query)),
        None => (s, Query("")),
    }
}

/// `%XX` sequences decoded; a malformed escape or a result that is not UTF-8 is kept as sent.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_name_drops_trailing_slash_instance_and_query() {
        for raw in [
            "live",
            "live/",
            "/live/",
            "live?token=abc",
            "live/?token=abc",
        ] {
            assert_eq!(RequestedApp::parse(raw).name, "live", "{raw}");
        }
        let app = RequestedApp::parse("live/_definst_/?token=abc");
        assert_eq!(app.name, "live");
        assert_eq!(app.instance, "_definst_");
        assert_eq!(app.query.token().as_deref(), Some("abc"));
    }

    #[test]
    fn app_from_tc_url_takes_the_path_after_the_host() {
        let app = RequestedApp::from_tc_url("rtmfp://edge.example.com:1935/live?token=abc");
        assert_eq!(app.name, "live");
        assert_eq!(app.query.token().as_deref(), Some("abc"));
        assert_eq!(
            RequestedApp::from_tc_url("rtmfp://[::1]/live/").name,
            "live"
        );
        assert_eq!(RequestedApp::from_tc_url("rtmfp://host").name, "");
        let bare = RequestedApp::from_tc_url("rtmfp://host?token=t");
        assert_eq!(bare.name, "");
        assert_eq!(bare.query.token().as_deref(), Some("t"));
    }

    #[test]
    fn query_decodes_escapes_and_keeps_plus() {
        let q = Query::new("a=1&token=ab%2Fc%3D%3D&b&x=a+b");
        assert_eq!(q.token().as_deref(), Some("ab/c=="));
        assert_eq!(q.get("a").as_deref(), Some("1"));
        assert_eq!(q.get("b").as_deref(), Some(""));
        assert_eq!(q.get("x").as_deref(), Some("a+b"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::new("token=%zz%4").token().as_deref(), Some("%zz%4"));
        assert_eq!(Query::new("token=").token(), None);
    }

    #[test]
    fn connect_token_prefers_extra_argument_then_app_then_tc_url() {
        let mut req = ConnectRequest {
            app: Some("live?token=from-app"),
            tc_url: Some("rtmfp://h/live?token=from-url"),
            first_extra_arg: Some("from-arg"),
        };
        assert_eq!(req.token().as_deref(), Some("from-arg"));
        req.first_extra_arg = Some("");
        assert_eq!(req.token().as_deref(), Some("from-app"));
        req.app = Some("live");
        assert_eq!(req.token().as_deref(), Some("from-url"));
        req.tc_url = Some("rtmfp://h/live");
        assert_eq!(req.token(), None);
    }

    #[test]
    fn connect_app_falls_back_to_tc_url() {
        let req = ConnectRequest {
            app: None,
            tc_url: Some("rtmfp://h:1935/live/?token=x"),
            first_extra_arg: None,
        };
        assert_eq!(req.app().name, "live");
        assert_eq!(req.token().as_deref(), Some("x"));
        let req = ConnectRequest {
            app: Some("studio/"),
            tc_url: Some("rtmfp://h/live"),
            first_extra_arg: None,
        };
        assert_eq!(req.app().name, "studio");
    }

    #[test]
    fn stream_name_splits_off_its_query() {
        let s = RequestedStream::parse("cam1?token=pub%21");
        assert_eq!(s.name, "cam1");
        assert_eq!(s.query.token().as_deref(), Some("pub!"));
        assert_eq!(RequestedStream::parse("cam1").query.as_str(), "");
    }
}
