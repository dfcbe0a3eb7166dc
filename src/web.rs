//! The built-in page (`GET /`): its files, embedded in the binary so the engine serves it with nothing
//! fetched at run time. The sources are in `web/assets/`; the chart library (uPlot, from the npm registry)
//! is vendored into `web/assets/vendor/` by `web/build.sh`, whose output is committed, so building the engine
//! needs no Node. `web/test/page.py` drives the page in a real browser (`tests/page.rs`).

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal, $file:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/assets/", $file)),
        }
    };
}

/// Every file of the page; the first is the page itself, at `/`.
pub const ASSETS: [Asset; 5] = [
    asset!("/", "text/html; charset=utf-8", "index.html"),
    asset!("/ui/app.js", "text/javascript; charset=utf-8", "app.js"),
    asset!("/ui/app.css", "text/css; charset=utf-8", "app.css"),
    asset!(
        "/ui/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        "vendor/uPlot.iife.min.js"
    ),
    asset!(
        "/ui/uPlot.min.css",
        "text/css; charset=utf-8",
        "vendor/uPlot.min.css"
    ),
];

/// Headers every asset is served with: the page may load only its own files.
pub const HEADERS: &str = "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n\
Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:\r\n";

/// The index in [`ASSETS`] of the file served at `path`.
pub fn find(path: &str) -> Option<u8> {
    ASSETS.iter().position(|a| a.path == path).map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_at_its_own_path_and_not_empty() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert_eq!(find(a.path), Some(i as u8));
            assert!(!a.body.is_empty(), "{}", a.path);
        }
        assert_eq!(find("/ui/"), None);
        assert_eq!(find("/ui/../Cargo.toml"), None);
    }

    #[test]
    fn the_page_loads_only_embedded_files() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        for src in page.split(['"', '\'']).filter(|s| s.starts_with("/ui/")) {
            assert!(
                find(src).is_some(),
                "the page refers to {src}, which is not embedded"
            );
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
