//! Who may obtain an upload credential for a namespace, asked of Kubernetes itself: the caller
//! presents a Kubernetes bearer token (a service account's, or a user's); a TokenReview says
//! whose it is, and a SubjectAccessReview whether that identity may create pods in the
//! namespace. Whoever may create pods there can already run anything in it (and read what its
//! pods read), so an upload credential gives them nothing more. Every failure refuses.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::Api;

/// The answer of a review.
#[derive(Debug)]
pub enum Verdict {
    /// May create pods in the namespace; the user name.
    Allowed(String),
    /// The token is not valid (unknown, expired, wrong audience).
    Unauthenticated,
    /// Valid, but this identity may not create pods there; the user name.
    Forbidden(String),
}

/// Asks the API server whether `token` may create pods in `namespace`. An error means the
/// API server could not answer (the caller refuses).
pub async fn review(
    client: &kube::Client,
    token: &str,
    namespace: &str,
) -> Result<Verdict, kube::Error> {
    let tr = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: None,
        },
        ..Default::default()
    };
    let tr = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &tr)
        .await?;
    let Some(status) = tr.status else {
        return Ok(Verdict::Unauthenticated);
    };
    let user = match (status.authenticated, status.user) {
        (Some(true), Some(user)) => user,
        _ => return Ok(Verdict::Unauthenticated),
    };
    let name = user.username.clone().unwrap_or_default();
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some("create".into()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let sar = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &sar)
        .await?;
    match sar.status {
        Some(s) if s.allowed && !s.denied.unwrap_or(false) => Ok(Verdict::Allowed(name)),
        _ => Ok(Verdict::Forbidden(name)),
    }
}
