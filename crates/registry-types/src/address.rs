//! The grammar of instance addresses as regular expressions: a URL, or its parts (scheme,
//! host, IP address, path). Each is published in `/openapi.json` as written here and
//! enforced as written, so a generated client's idea of a valid address and the daemon's
//! are the same: every string a pattern matches is accepted, every other one refused.
//!
//! The grammar is narrower than what a URL parser takes, on purpose: only what a health
//! checker can dial and a URL parser reads the same way in every client. Host names are
//! letters, digits, underscores and inner hyphens in dot-separated labels, the last not
//! starting with a digit (a last label of digits would be read as an IPv4 address); IPv4 addresses have
//! no leading zeros; ports are 1 to 65535, written without leading zeros and required
//! unless the scheme has a default port (http, https, ws, wss); paths are RFC 3986 path
//! characters and percent escapes, without a query or fragment.

use regex::Regex;
use std::sync::LazyLock;

/// One IPv4 octet, 0 to 255, with no leading zero.
const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
/// One IPv6 group.
const GROUP: &str = "[0-9A-Fa-f]{1,4}";
/// A host-name label: letters, digits and underscores (container names have them), hyphens
/// only between them.
const LABEL: &str = "[A-Za-z0-9_]+(-[A-Za-z0-9_]+)*";
/// The last label of a host name, which starts with a letter or an underscore.
const LAST_LABEL: &str = "[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*";
/// 1 to 65535, no leading zero.
const PORT: &str =
    "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
/// A URL scheme other than `file` (whose URLs have no port), in any case.
const SCHEME: &str = "([A-Za-z][A-Za-z0-9+.-]{0,2}|[A-Za-z][A-Za-z0-9+.-]{4,}\
    |[A-EG-Za-eg-z][A-Za-z0-9+.-]{3}|[fF][A-HJ-Za-hj-z0-9+.-][A-Za-z0-9+.-]{2}\
    |[fF][iI][A-KM-Za-km-z0-9+.-][A-Za-z0-9+.-]|[fF][iI][lL][A-DF-Za-df-z0-9+.-])";
/// The schemes with a default port, so that their URLs may leave the port out.
const DEFAULT_PORT_SCHEME: &str = "([hH][tT][tT][pP][sS]?|[wW][sS][sS]?)";
/// Path characters (RFC 3986 `pchar` and `/`) and percent escapes.
const PATH_CHARS: &str = "([A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*";

fn ipv4() -> String {
    format!(r"{OCTET}(\.{OCTET}){{3}}")
}

/// Every way to write an IPv6 address: eight groups, or six and an IPv4 address, with at
/// most one `::` standing for one or more zero groups.
fn ipv6() -> String {
    let ipv4 = ipv4();
    let mut forms = vec![
        format!("({GROUP}:){{7}}{GROUP}"),
        format!("({GROUP}:){{6}}{ipv4}"),
    ];
    // `left` groups before the `::`, then up to what is left of the eight after it.
    let before = |left: usize| match left {
        0 => String::new(),
        n => format!("({GROUP}:){{{}}}{GROUP}", n - 1),
    };
    for left in 0..=7 {
        let after = match 7 - left {
            0 => String::new(),
            n => format!("(({GROUP}:){{0,{}}}{GROUP})?", n - 1),
        };
        forms.push(format!("{}::{after}", before(left)));
    }
    for left in 0..=5 {
        forms.push(format!(
            "{}::({GROUP}:){{0,{}}}{ipv4}",
            before(left),
            5 - left
        ));
    }
    format!("({})", forms.join("|"))
}

fn host_name() -> String {
    format!(r"({LABEL}\.)*{LAST_LABEL}")
}

/// `^(…)$`, or `^(|…)$` when `optional`: an empty string stands for "not given".
fn anchored(body: &str, optional: bool) -> String {
    if optional {
        format!("^(|{body})$")
    } else {
        format!("^({body})$")
    }
}

/// The patterns, each in its anchored form and compiled.
struct Grammar {
    url: String,
    scheme: String,
    host: String,
    ip: String,
    path: String,
    url_regex: Regex,
    scheme_regex: Regex,
    host_regex: Regex,
    ip_regex: Regex,
    path_regex: Regex,
}

static GRAMMAR: LazyLock<Grammar> = LazyLock::new(|| {
    let ip = format!("{}|{}", ipv4(), ipv6());
    let url_host = format!(r"{}|{}|\[{}\]", host_name(), ipv4(), ipv6());
    let url = format!(
        "({SCHEME}://({url_host}):{PORT}|{DEFAULT_PORT_SCHEME}://({url_host}))(/{PATH_CHARS})?"
    );
    let host = format!("{}|{ip}", host_name());
    let compile = |pattern: &str| Regex::new(pattern).expect("the address grammar compiles");
    let url = anchored(&url, true);
    let scheme = anchored(SCHEME, true);
    let host = anchored(&host, true);
    let ip = anchored(&ip, true);
    let path = anchored(PATH_CHARS, false);
    Grammar {
        url_regex: compile(&url),
        scheme_regex: compile(&scheme),
        host_regex: compile(&host),
        ip_regex: compile(&ip),
        path_regex: compile(&path),
        url,
        scheme,
        host,
        ip,
        path,
    }
});

/// What a pattern is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    /// An absolute URL: scheme, host, a port (unless the scheme has a default one), a path.
    Url,
    /// A URL scheme (not `file`).
    Scheme,
    /// A host name, an IPv4 address or an IPv6 address (without brackets).
    Host,
    /// An IPv4 or IPv6 address.
    Ip,
    /// A URL path without query or fragment.
    Path,
}

impl AddressPart {
    /// The anchored pattern of this part; the empty string matches it too ("not given"),
    /// as every part may be left out of a request.
    pub fn pattern(self) -> &'static str {
        let grammar = &*GRAMMAR;
        match self {
            AddressPart::Url => &grammar.url,
            AddressPart::Scheme => &grammar.scheme,
            AddressPart::Host => &grammar.host,
            AddressPart::Ip => &grammar.ip,
            AddressPart::Path => &grammar.path,
        }
    }

    /// Whether `text` is a valid value of this part (or empty).
    pub fn admits(self, text: &str) -> bool {
        let grammar = &*GRAMMAR;
        let regex = match self {
            AddressPart::Url => &grammar.url_regex,
            AddressPart::Scheme => &grammar.scheme_regex,
            AddressPart::Host => &grammar.host_regex,
            AddressPart::Ip => &grammar.ip_regex,
            AddressPart::Path => &grammar.path_regex,
        };
        regex.is_match(text)
    }

    /// What a valid value looks like, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            AddressPart::Url => {
                "an absolute URL: scheme://host:port/path, the port optional for http, \
                 https, ws and wss, no query or fragment"
            }
            AddressPart::Scheme => "a URL scheme (a letter, then letters, digits, '+', '-', '.')",
            AddressPart::Host => {
                "a host name (letters, digits, underscores and inner hyphens in dot-separated \
                 labels, the last not starting with a digit) or an IP address"
            }
            AddressPart::Ip => "an IPv4 or IPv6 address",
            AddressPart::Path => "a URL path: letters, digits, -._~!$&'()*+,;=:@/ and %XX escapes",
        }
    }
}
