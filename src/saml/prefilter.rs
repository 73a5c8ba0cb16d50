//! TEMPORARY STUB — replaced by the real pre-filter.
#[derive(Debug, Clone)]
pub struct PrefilterPolicy {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub allow_sha1: bool,
}
impl Default for PrefilterPolicy {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_depth: 32,
            max_elements: 4096,
            max_attributes: 64,
            allow_sha1: false,
        }
    }
}
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeFacts {
    pub response_id: Option<String>,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    pub issuer: Option<String>,
    pub status_code: Option<String>,
    pub sub_status_code: Option<String>,
    pub status_message: Option<String>,
    pub response_signed: bool,
    pub assertion_count: usize,
    pub encrypted_assertion_count: usize,
    pub assertion_signed: bool,
    pub signature_count: usize,
    pub name_id_sp_name_qualifier: Option<String>,
}
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PrefilterError {
    #[error("stub")]
    Stub,
}
pub fn prefilter(_xml: &[u8], _p: &PrefilterPolicy) -> Result<EnvelopeFacts, PrefilterError> {
    Err(PrefilterError::Stub)
}
