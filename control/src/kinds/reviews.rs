//! The access and identity reviews (`authorization.k8s.io/v1`,
//! `authentication.k8s.io/v1`): created, answered and never stored. What
//! they answer is `crate::api::review`.

use k8s_openapi::api::{authentication::v1 as authn, authorization::v1 as authz};

use super::Kind;
use crate::resources::{ResourceType, created_only};

#[derive(Debug)]
pub struct SelfSubjectAccessReview;

impl Kind for SelfSubjectAccessReview {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![created_only::<authz::SelfSubjectAccessReview>(self)]
    }
}

#[derive(Debug)]
pub struct SelfSubjectRulesReview;

impl Kind for SelfSubjectRulesReview {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![created_only::<authz::SelfSubjectRulesReview>(self)]
    }
}

#[derive(Debug)]
pub struct SubjectAccessReview;

impl Kind for SubjectAccessReview {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![created_only::<authz::SubjectAccessReview>(self)]
    }
}

#[derive(Debug)]
pub struct LocalSubjectAccessReview;

impl Kind for LocalSubjectAccessReview {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![created_only::<authz::LocalSubjectAccessReview>(self)]
    }
}

#[derive(Debug)]
pub struct SelfSubjectReview;

impl Kind for SelfSubjectReview {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![created_only::<authn::SelfSubjectReview>(self)]
    }
}

#[derive(Debug)]
pub struct TokenReview;

impl Kind for TokenReview {
    fn resources(&'static self) -> Vec<ResourceType> {
        vec![created_only::<authn::TokenReview>(self)]
    }
}
