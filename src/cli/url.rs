//! `rtmfp://HOST[:PORT]/APP[/STREAM]` URLs, and the `#STREAM` form some clients use.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmfpUrl {
    pub server: SocketAddr,
    /// `rtmfp://HOST[:PORT]/APP`, what `connect` sends as tcUrl.
    pub tc_url: String,
    pub app: String,
    pub stream: Option<String>,
}

impl RtmfpUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("rtmfp://") else {
            bail!("expected a URL like rtmfp://HOST[:PORT]/APP[/STREAM], got {url:?}");
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            bail!("no host in {url:?}");
        }
        let (app, stream) = match path.split_once('#') {
            Some((app, stream)) => (app.trim_end_matches('/'), Some(stream)),
            None => match path.split_once('/') {
                Some((app, stream)) => (app, Some(stream)),
                None => (path, None),
            },
        };
        let stream = stream.filter(|s| !s.is_empty()).map(str::to_owned);
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:1935")
        };
        let server = with_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {with_port}"))?
            .next()
            .with_context(|| format!("{with_port} resolves to no address"))?;
        Ok(RtmfpUrl {
            server,
            tc_url: format!("rtmfp://{authority}/{app}"),
            app: app.to_owned(),
            stream,
        })
    }

    /// The stream name, or an error that says the URL needs one.
    pub fn stream(&self) -> Result<&str> {
        self.stream.as_deref().with_context(|| {
            format!(
                "no stream name in the URL: use {}/STREAM or {}#STREAM",
                self.tc_url, self.tc_url
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_and_stream_come_from_the_path_or_the_fragment() {
        let u = RtmfpUrl::parse("rtmfp://127.0.0.1:19350/live/demo").unwrap();
        assert_eq!(u.server, "127.0.0.1:19350".parse().unwrap());
        assert_eq!(
            (u.app.as_str(), u.stream.as_deref()),
            ("live", Some("demo"))
        );
        assert_eq!(u.tc_url, "rtmfp://127.0.0.1:19350/live");
        let u = RtmfpUrl::parse("rtmfp://127.0.0.1/live#cam1?token=x").unwrap();
        assert_eq!(u.server.port(), 1935);
        assert_eq!(u.stream.as_deref(), Some("cam1?token=x"));
        let u = RtmfpUrl::parse("rtmfp://127.0.0.1/live").unwrap();
        assert!(u.stream.is_none() && u.stream().is_err());
        assert!(RtmfpUrl::parse("rtmp://127.0.0.1/live").is_err());
        assert!(RtmfpUrl::parse("rtmfp:///live").is_err());
    }
}
