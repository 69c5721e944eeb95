//! The commercetools Customer resource, as the HTTP API and its exports deliver it.
//!
//! Every field is optional unless commercetools guarantees it, unknown fields are
//! ignored, and nothing here is validated: the transformation decides what a value
//! is worth. See the Customer type of the commercetools HTTP API reference.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A commercetools Customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Customer {
    /// Platform-generated unique identifier.
    pub id: String,
    /// Current version; increases with every update.
    pub version: i64,
    /// User-defined unique identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The shop's own customer number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_number: Option<String>,
    /// Identifier in an external system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Email address, letter case as entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Given name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Middle name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Honorific title (Dr., Prof.); not a job title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Salutation (Mr., Ms.).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    /// Date of birth, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// Company name, for business customers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// VAT identification number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vat_id: Option<String>,
    /// Addresses, in the order commercetools keeps them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Id of the default shipping address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_shipping_address_id: Option<String>,
    /// Ids of the shipping addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shipping_address_ids: Vec<String>,
    /// Id of the default billing address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_billing_address_id: Option<String>,
    /// Ids of the billing addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub billing_address_ids: Vec<String>,
    /// Whether the email address was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_email_verified: Option<bool>,
    /// The customer group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_group: Option<Reference>,
    /// Further customer groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub customer_group_assignments: Vec<CustomerGroupAssignment>,
    /// Custom fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomFields>,
    /// Preferred locale, e.g. `de-DE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Stores the customer belongs to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<KeyReference>,
    /// `Password` or `ExternalAuth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_mode: Option<String>,
    /// Creation time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Last modification time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_at: Option<String>,
    /// Who created the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Initiator>,
    /// Who last modified the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_by: Option<Initiator>,
}

/// Who made a change (the API's `CreatedBy` / `LastModifiedBy`). Typed rather than
/// kept as a JSON tree: every export record carries two, and a tree costs a map
/// and its allocations per record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)] // The fields are the API's, named as it names them.
pub struct Initiator {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_platform_client: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associate: Option<Reference>,
}

/// An assignment of the customer to a further customer group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomerGroupAssignment {
    /// The group.
    pub customer_group: Reference,
}

/// A postal address of a customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)] // The fields are the API's, named as it names them.
pub struct Address {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_street_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apartment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_o_box: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fax: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_address_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomFields>,
}

/// A reference to another resource by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Reference {
    /// The referenced resource type, e.g. `customer-group`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_id: Option<String>,
    /// The referenced resource's id.
    pub id: String,
}

/// A reference to another resource by key (stores are referenced this way).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyReference {
    /// The referenced resource type, e.g. `store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_id: Option<String>,
    /// The referenced resource's key.
    pub key: String,
}

/// Custom fields: the type that defines them and their values by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomFields {
    /// The Type that defines the fields.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_ref: Option<Reference>,
    /// The values, by field name.
    pub fields: Map<String, Value>,
}
