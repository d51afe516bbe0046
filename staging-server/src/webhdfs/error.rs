//! WebHDFS errors as Hadoop's client reads them: a status code and a `RemoteException` JSON
//! body naming a Java exception class, which the client rethrows as that class
//! (`FileNotFoundException`, `AccessControlException`, `FileAlreadyExistsException`, ...).
//!
//! The body is sent without a `Content-Type`: the WebHDFS client in stock Spark 4.x (Hadoop's
//! shaded client 3.4+) parses a response's content type with a JAX-RS class whose
//! implementation the shaded jars leave out, so any JSON answer that carries one fails with
//! `ClassNotFoundException: ...RuntimeDelegateImpl` instead of the exception meant. Without
//! the header the client skips that check and reads the JSON.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug)]
pub struct HdfsError {
    pub status: StatusCode,
    /// Simple name of the Java exception (`FileNotFoundException`).
    pub exception: &'static str,
    /// Its class (`java.io.FileNotFoundException`).
    pub class: &'static str,
    pub message: String,
    /// Seconds to wait (429 answers).
    pub retry_after: Option<u64>,
}

impl HdfsError {
    fn new(
        status: StatusCode,
        exception: &'static str,
        class: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            exception,
            class,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "FileNotFoundException",
            "java.io.FileNotFoundException",
            format!("File does not exist: {what}"),
        )
    }

    /// No usable credential (Hadoop's client turns any 401 into an `AccessControlException`).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AccessControlException",
            "org.apache.hadoop.security.AccessControlException",
            message,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "AccessControlException",
            "org.apache.hadoop.security.AccessControlException",
            message,
        )
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "FileAlreadyExistsException",
            "org.apache.hadoop.fs.FileAlreadyExistsException",
            message,
        )
    }

    pub fn parent_not_dir(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ParentNotDirectoryException",
            "org.apache.hadoop.fs.ParentNotDirectoryException",
            message,
        )
    }

    pub fn not_empty(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PathIsNotEmptyDirectoryException",
            "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
            message,
        )
    }

    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "DSQuotaExceededException",
            "org.apache.hadoop.hdfs.protocol.DSQuotaExceededException",
            message,
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "IOException",
            "java.io.IOException",
            message,
        )
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "IOException",
            "java.io.IOException",
            message,
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IllegalArgumentException",
            "java.lang.IllegalArgumentException",
            message,
        )
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperationException",
            "java.lang.UnsupportedOperationException",
            message,
        )
    }

    pub fn io(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "IOException",
            "java.io.IOException",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "IOException",
            "java.io.IOException",
            message,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "IOException",
            "java.io.IOException",
            message,
        )
    }
}

impl From<sidecars_common::objstore::StoreError> for HdfsError {
    fn from(e: sidecars_common::objstore::StoreError) -> Self {
        HdfsError::internal(e.to_string())
    }
}

impl From<crate::api::ApiError> for HdfsError {
    fn from(e: crate::api::ApiError) -> Self {
        HdfsError::internal(e.1)
    }
}

impl IntoResponse for HdfsError {
    fn into_response(self) -> Response {
        let msg = crate::errors::bounded(&self.message);
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, exception = self.exception, "webhdfs: {msg}");
        } else if self.status == StatusCode::NOT_FOUND {
            // Hadoop's client asks for the status of every file before creating it
            tracing::debug!(status = %self.status, exception = self.exception, "webhdfs: {msg}");
        } else {
            tracing::info!(status = %self.status, exception = self.exception, "webhdfs: {msg}");
        }
        let body = serde_json::json!({
            "RemoteException": {
                "exception": self.exception,
                "javaClassName": self.class,
                "message": crate::errors::for_client(self.status, &msg),
            }
        });
        let mut resp = (self.status, body.to_string()).into_response();
        // see the module docs: no Content-Type on WebHDFS JSON
        resp.headers_mut().remove(header::CONTENT_TYPE);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"staging-server\""),
            );
        }
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
