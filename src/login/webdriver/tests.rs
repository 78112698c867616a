//! What can be checked without a browser: message bounds, URL paths, a missing driver.

use std::path::Path;

use super::driver::Chromedriver;
use super::error::LoginError;
use super::wire::{first_line, path_of, MAX_MESSAGE};

#[test]
fn messages_are_bounded_and_paths_extracted() {
    assert_eq!(first_line("a\nb"), "a");
    assert_eq!(first_line(&"x".repeat(400)).len(), MAX_MESSAGE + 3);
    assert_eq!(
        path_of("http://127.0.0.1:9/session/1/url"),
        "/session/1/url"
    );
}

#[test]
fn missing_driver_is_reported_with_its_path() {
    let err = Chromedriver::spawn(Path::new("/nonexistent/chromedriver")).unwrap_err();
    assert!(matches!(err, LoginError::DriverMissing { .. }));
    assert!(err.to_string().contains("/nonexistent/chromedriver"));
    assert!(err.to_string().contains("chromium-driver"));
}
