//! Reading a mapping file: TOML text → [`Rules`], with every problem found.
//!
//! The document is walked by hand rather than deserialised, so that one pass sees
//! every key with its position and reports all problems, not the first. It runs in
//! two steps: the shape (known tables and keys, the kind of each value, no empty
//! names or blank constants) into a [`Draft`], then the meaning (known traits, no
//! name given twice) into [`Rules`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use serde_json::{Map, Value};
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::{ConsentSource, MappingError, MappingProblem, Placement, Rules, TraitKey};

/// Reads the text of a mapping file named `file`. The rules are meaningful only
/// when no problem is returned.
pub(super) fn read(text: &str, file: &str) -> (Rules, Vec<MappingError>) {
    let mut reader = Reader {
        text,
        file: Arc::from(file),
        errors: Vec::new(),
    };
    // Only the first syntax error: after it, a recovering parser mostly reports
    // echoes of the same mistake.
    let document = match DeTable::parse(text) {
        Ok(document) => document,
        Err(error) => {
            let at = error.span().unwrap_or(text.len()..text.len());
            let message = error.message().split_whitespace().collect::<Vec<_>>();
            reader.report(
                at,
                None,
                MappingProblem::Syntax {
                    message: message.join(" "),
                },
            );
            return (Rules::standard().clone(), reader.errors);
        }
    };
    let draft = reader.draft(document.get_ref());
    let rules = reader.rules(draft);
    (rules, reader.errors)
}

/// Where something is written: its span in the text and its dotted key.
#[derive(Debug, Clone)]
struct Site {
    span: Range<usize>,
    key: String,
}

/// A name and where it is written.
#[derive(Debug, Clone)]
struct Named {
    name: String,
    site: Site,
}

/// `from = "to"`: the key and the value, each where it is written.
#[derive(Debug, Clone)]
struct Rename {
    from: Named,
    to: Named,
}

/// The file's content, well-formed but not yet checked for meaning.
#[derive(Debug, Default)]
struct Draft {
    exclude: Vec<Named>,
    rename: Vec<Rename>,
    constants: Vec<(Named, Value)>,
    /// The `[custom]` table, when there is one.
    custom: Option<Site>,
    include: Option<Vec<Named>>,
    custom_rename: Vec<Rename>,
    placement: Option<(Placement, Site)>,
    consent: Vec<(Named, ConsentSource)>,
}

struct Reader<'t> {
    text: &'t str,
    file: Arc<str>,
    errors: Vec<MappingError>,
}

/// Which names must differ from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Namespace {
    Traits,
    Address,
    Company,
    NestedCustom,
}

impl Reader<'_> {
    fn report(&mut self, span: Range<usize>, key: Option<String>, problem: MappingProblem) {
        let error = self.error_at(span, key, problem);
        self.errors.push(error);
    }

    fn error_at(
        &self,
        span: Range<usize>,
        key: Option<String>,
        problem: MappingProblem,
    ) -> MappingError {
        let (line, column) = position(self.text, span.start);
        MappingError {
            file: Arc::clone(&self.file),
            line,
            column,
            key,
            problem,
        }
    }

    fn report_at(&mut self, site: &Site, problem: MappingProblem) {
        self.report(site.span.clone(), Some(site.key.clone()), problem);
    }

    // -----------------------------------------------------------------------
    // Shape.

    fn draft(&mut self, root: &DeTable<'_>) -> Draft {
        let mut draft = Draft::default();
        for (key, value) in root {
            let path = quoted(key.get_ref());
            match key.get_ref().as_ref() {
                "traits" => {
                    if let Some(table) = self.table(value, &path) {
                        self.traits(table, &path, &mut draft);
                    }
                }
                "custom" => {
                    if let Some(table) = self.table(value, &path) {
                        // An empty `[custom]` says nothing, so it contradicts nothing.
                        if !table.is_empty() {
                            draft.custom = Some(site(key, &path));
                        }
                        self.custom(table, &path, &mut draft);
                    }
                }
                "consent" => {
                    if let Some(table) = self.table(value, &path) {
                        self.consent(table, &path, &mut draft);
                    }
                }
                _ => self.unknown(key, &path, "[traits], [custom] or [consent]"),
            }
        }
        draft
    }

    fn traits(&mut self, table: &DeTable<'_>, parent: &str, draft: &mut Draft) {
        for (key, value) in table {
            let path = join(parent, key.get_ref());
            match key.get_ref().as_ref() {
                "exclude" => draft.exclude = self.names(value, &path, "an array of trait names"),
                "rename" => {
                    if let Some(table) = self.table(value, &path) {
                        draft.rename = self.renames(table, &path, None, true);
                    }
                }
                "constant" => {
                    if let Some(table) = self.table(value, &path) {
                        for (name, value) in table {
                            let at = join(&path, name.get_ref());
                            let Some(name) = self.name(name, &at) else {
                                continue;
                            };
                            if let Some(value) = self.constant(value, &at) {
                                draft.constants.push((name, value));
                            }
                        }
                    }
                }
                _ => self.unknown(key, &path, "exclude, rename or constant"),
            }
        }
    }

    fn custom(&mut self, table: &DeTable<'_>, parent: &str, draft: &mut Draft) {
        for (key, value) in table {
            let path = join(parent, key.get_ref());
            match key.get_ref().as_ref() {
                "include" => {
                    draft.include =
                        Some(self.names(value, &path, "an array of custom field names"));
                }
                "rename" => {
                    if let Some(table) = self.table(value, &path) {
                        draft.custom_rename = self.renames(table, &path, None, false);
                    }
                }
                "placement" => {
                    let at = Site {
                        span: value.span(),
                        key: path.clone(),
                    };
                    match value.get_ref() {
                        DeValue::String(text) => match text.trim() {
                            "nested" => draft.placement = Some((Placement::Nested, at)),
                            "top-level" => draft.placement = Some((Placement::TopLevel, at)),
                            other => self.report_at(
                                &at,
                                MappingProblem::UnknownPlacement {
                                    found: other.to_owned(),
                                },
                            ),
                        },
                        other => self.wrong_type(&at, "\"nested\" or \"top-level\"", other),
                    }
                }
                _ => self.unknown(key, &path, "include, rename or placement"),
            }
        }
    }

    fn consent(&mut self, table: &DeTable<'_>, parent: &str, draft: &mut Draft) {
        for (key, value) in table {
            let path = join(parent, key.get_ref());
            if key.get_ref() != "categories" {
                self.unknown(key, &path, "[consent.categories]");
                continue;
            }
            let Some(categories) = self.table(value, &path) else {
                continue;
            };
            for (category, source) in categories {
                let at = join(&path, category.get_ref());
                let Some(category) = self.name(category, &at) else {
                    continue;
                };
                if let Some(source) = self.consent_source(source, &at) {
                    draft.consent.push((category, source));
                }
            }
        }
    }

    /// `"field"`, or `{ field = "…", true_when = […] }`.
    fn consent_source(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &str,
    ) -> Option<ConsentSource> {
        let table = match value.get_ref() {
            DeValue::Table(table) => table,
            DeValue::String(_) => {
                let field = self.string_name(value, path)?;
                return Some(ConsentSource {
                    field,
                    true_when: None,
                });
            }
            other => {
                let at = Site {
                    span: value.span(),
                    key: path.to_owned(),
                };
                let expected = "a custom field name or { field = \"…\", true_when = [\"…\"] }";
                self.wrong_type(&at, expected, other);
                return None;
            }
        };
        let errors_before = self.errors.len();
        let mut field = None;
        let mut has_field = false;
        let mut true_when = None;
        for (key, value) in table {
            let path = join(path, key.get_ref());
            match key.get_ref().as_ref() {
                "field" => {
                    has_field = true;
                    field = self.string_name(value, &path);
                }
                "true_when" => {
                    if matches!(value.get_ref(), DeValue::Array(items) if items.is_empty()) {
                        let at = Site {
                            span: value.span(),
                            key: path.clone(),
                        };
                        self.report_at(&at, MappingProblem::EmptyTrueWhen);
                    }
                    let values = self.names(value, &path, "an array of values");
                    true_when = Some(values.into_iter().map(|value| value.name).collect());
                }
                _ => self.unknown(key, &path, "field or true_when"),
            }
        }
        if !has_field {
            let at = Site {
                span: value.span(),
                key: path.to_owned(),
            };
            self.report_at(&at, MappingProblem::MissingKey { key: "field" });
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(ConsentSource {
            field: field?,
            true_when,
        })
    }

    /// `from = "to"` pairs; with `nest`, a table one level down stands for the keys
    /// of a nested trait (`address = { postalCode = "address.zip" }`).
    fn renames(
        &mut self,
        table: &DeTable<'_>,
        path: &str,
        prefix: Option<&str>,
        nest: bool,
    ) -> Vec<Rename> {
        let mut renames = Vec::new();
        for (key, value) in table {
            let at = join(path, key.get_ref());
            let Some(from) = self.name(key, &at) else {
                continue;
            };
            let from = match prefix {
                Some(prefix) => Named {
                    name: format!("{prefix}.{}", from.name),
                    ..from
                },
                None => from,
            };
            match value.get_ref() {
                DeValue::String(_) => {
                    if let Some(to) = self.string_name(value, &at) {
                        let to = Named {
                            name: to,
                            site: Site {
                                span: value.span(),
                                key: at,
                            },
                        };
                        renames.push(Rename { from, to });
                    }
                }
                DeValue::Table(inner) if nest => {
                    renames.extend(self.renames(inner, &at, Some(&from.name), false));
                }
                other => {
                    let at = Site {
                        span: value.span(),
                        key: at,
                    };
                    self.wrong_type(&at, "a new name (string)", other);
                }
            }
        }
        renames
    }

    /// An array of non-empty strings.
    fn names(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &str,
        expected: &'static str,
    ) -> Vec<Named> {
        let DeValue::Array(items) = value.get_ref() else {
            let at = Site {
                span: value.span(),
                key: path.to_owned(),
            };
            self.wrong_type(&at, expected, value.get_ref());
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| {
                let name = self.string_name(item, path)?;
                Some(Named {
                    name,
                    site: Site {
                        span: item.span(),
                        key: path.to_owned(),
                    },
                })
            })
            .collect()
    }

    /// A string value that names something: not empty, not only whitespace.
    fn string_name(&mut self, value: &Spanned<DeValue<'_>>, path: &str) -> Option<String> {
        let at = Site {
            span: value.span(),
            key: path.to_owned(),
        };
        match value.get_ref() {
            DeValue::String(text) if text.trim().is_empty() => {
                self.report_at(&at, MappingProblem::EmptyName);
                None
            }
            DeValue::String(text) => Some(text.clone().into_owned()),
            other => {
                self.wrong_type(&at, "a name (string)", other);
                None
            }
        }
    }

    /// A key that names something: not empty, not only whitespace.
    fn name(&mut self, key: &Spanned<Cow<'_, str>>, path: &str) -> Option<Named> {
        let at = site(key, path);
        if key.get_ref().trim().is_empty() {
            self.report_at(&at, MappingProblem::EmptyName);
            return None;
        }
        Some(Named {
            name: key.get_ref().clone().into_owned(),
            site: at,
        })
    }

    /// A constant trait's value as JSON: never blank or empty at any depth.
    fn constant(&mut self, value: &Spanned<DeValue<'_>>, path: &str) -> Option<Value> {
        let at = Site {
            span: value.span(),
            key: path.to_owned(),
        };
        let json = match value.get_ref() {
            DeValue::String(text) if text.trim().is_empty() => {
                self.report_at(&at, MappingProblem::BlankConstant);
                return None;
            }
            DeValue::String(text) => Value::String(text.clone().into_owned()),
            DeValue::Integer(integer) => {
                match i64::from_str_radix(integer.as_str(), integer.radix()) {
                    Ok(number) => Value::from(number),
                    Err(_) => {
                        self.wrong_type(&at, "a 64-bit integer", value.get_ref());
                        return None;
                    }
                }
            }
            DeValue::Float(float) => {
                let number = float
                    .as_str()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64);
                match number {
                    Some(number) => Value::Number(number),
                    None => {
                        self.report_at(
                            &at,
                            MappingProblem::WrongType {
                                expected: "a finite number",
                                found: "infinity or nan",
                            },
                        );
                        return None;
                    }
                }
            }
            DeValue::Boolean(flag) => Value::Bool(*flag),
            DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
            DeValue::Array(items) => self.constant_array(items, &at)?,
            DeValue::Table(table) => {
                if table.is_empty() {
                    self.report_at(&at, MappingProblem::BlankConstant);
                    return None;
                }
                let mut object = Map::new();
                let mut complete = true;
                for (key, value) in table {
                    let inner = join(path, key.get_ref());
                    let name = self.name(key, &inner);
                    let value = self.constant(value, &inner);
                    match (name, value) {
                        (Some(name), Some(value)) => {
                            object.insert(name.name, value);
                        }
                        _ => complete = false,
                    }
                }
                complete.then_some(Value::Object(object))?
            }
        };
        Some(json)
    }

    fn constant_array(&mut self, items: &DeArray<'_>, at: &Site) -> Option<Value> {
        if items.is_empty() {
            self.report_at(at, MappingProblem::BlankConstant);
            return None;
        }
        let values: Vec<Option<Value>> = items
            .iter()
            .map(|item| self.constant(item, &at.key))
            .collect();
        values
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(Value::Array)
    }

    fn table<'v, 'i>(
        &mut self,
        value: &'v Spanned<DeValue<'i>>,
        path: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            other => {
                let at = Site {
                    span: value.span(),
                    key: path.to_owned(),
                };
                self.wrong_type(&at, "a table", other);
                None
            }
        }
    }

    fn wrong_type(&mut self, at: &Site, expected: &'static str, found: &DeValue<'_>) {
        let found = found.type_str();
        self.report_at(at, MappingProblem::WrongType { expected, found });
    }

    fn unknown(&mut self, key: &Spanned<Cow<'_, str>>, path: &str, expected: &'static str) {
        self.report_at(&site(key, path), MappingProblem::UnknownKey { expected });
    }

    // -----------------------------------------------------------------------
    // Meaning.

    fn rules(&mut self, mut draft: Draft) -> Rules {
        let mut rules = Rules::standard().clone();
        let mut excluded = [false; super::TRAIT_KEYS];
        for named in &draft.exclude {
            if let Some(key) = self.trait_key(named) {
                excluded[key as usize] = true;
                rules.names[key as usize] = None;
            }
        }

        // Every name is claimed once, in this order: the standard traits that keep
        // their name, then the file's new names in file order. The second claim of
        // a name is the error, reported where it is written.
        let mut claims = Claims::default();
        draft
            .rename
            .sort_by_key(|rename| rename.from.site.span.start);
        let mut renamed = [false; super::TRAIT_KEYS];
        let mut accepted = Vec::new();
        for rename in &draft.rename {
            let Some(key) = self.trait_key(&rename.from) else {
                continue;
            };
            let excluded_by = [Some(key), key.parent()]
                .into_iter()
                .flatten()
                .find(|k| excluded[*k as usize]);
            if let Some(excluded) = excluded_by {
                self.report_at(
                    &rename.from.site,
                    MappingProblem::ExcludedAndRenamed {
                        excluded: excluded.path(),
                    },
                );
                continue;
            }
            let Some(leaf) = self.new_name(key, &rename.to) else {
                continue;
            };
            renamed[key as usize] = true;
            accepted.push((key, leaf, rename));
        }
        let custom_at_top_level = draft
            .placement
            .as_ref()
            .is_some_and(|(placement, _)| *placement == Placement::TopLevel);
        for key in TraitKey::ALL {
            let keeps_name = !excluded[key as usize] && !renamed[key as usize];
            let placed_elsewhere = key == TraitKey::Custom && custom_at_top_level;
            if keeps_name && !placed_elsewhere {
                claims.insert(
                    namespace_of(key),
                    key.leaf().to_owned(),
                    format!("the trait \"{}\"", key.path()),
                );
            }
        }
        for (key, leaf, rename) in accepted {
            if key == TraitKey::Custom && custom_at_top_level {
                self.report_at(&rename.from.site, MappingProblem::CustomRenamedAtTopLevel);
                continue;
            }
            let by = rename.from.site.key.clone();
            self.claim(
                &mut claims,
                namespace_of(key),
                &leaf,
                &rename.to.site,
                by,
                key == TraitKey::Email,
            );
            rules.names[key as usize] = Some(Cow::Owned(leaf));
        }

        draft
            .constants
            .sort_by_key(|(named, _)| named.site.span.start);
        for (named, value) in std::mem::take(&mut draft.constants) {
            if !self.plain_name(&named) {
                continue;
            }
            let by = named.site.key.clone();
            let fine = self.claim(
                &mut claims,
                Namespace::Traits,
                &named.name,
                &named.site,
                by,
                false,
            );
            if fine {
                rules.constants.push((named.name, value));
            }
        }

        if custom_at_top_level {
            // A standard trait's name stays its own even when it is excluded: a
            // privacy team that drops `birthday` must not see a custom field arrive
            // under that name unless the file says so.
            let standard = TraitKey::ALL
                .into_iter()
                .filter(|key| key.parent().is_none())
                .map(|key| key.path().to_owned());
            let claimed = claims
                .names
                .keys()
                .filter(|(namespace, _)| *namespace == Namespace::Traits)
                .map(|(_, name)| name.clone());
            rules.taken = standard.chain(claimed).collect();
        }
        self.custom_rules(
            &draft,
            &excluded,
            custom_at_top_level,
            &mut claims,
            &mut rules,
        );

        rules.email_claim = claims.email;

        draft
            .consent
            .sort_by_key(|(category, _)| category.site.span.start);
        rules.consent = draft
            .consent
            .into_iter()
            .map(|(category, source)| (category.name, source))
            .collect();
        rules
    }

    fn custom_rules(
        &mut self,
        draft: &Draft,
        excluded: &[bool; super::TRAIT_KEYS],
        at_top_level: bool,
        claims: &mut Claims,
        rules: &mut Rules,
    ) {
        if let Some(custom) = &draft.custom {
            if excluded[TraitKey::Custom as usize] {
                self.report_at(custom, MappingProblem::CustomExcluded);
                return;
            }
        }
        if let Some((placement, _)) = &draft.placement {
            rules.placement = *placement;
        }
        let namespace = if at_top_level {
            Namespace::Traits
        } else {
            Namespace::NestedCustom
        };
        let renamed: BTreeSet<&str> = draft
            .custom_rename
            .iter()
            .map(|rename| rename.from.name.as_str())
            .collect();
        if let Some(include) = &draft.include {
            rules.include = Some(include.iter().map(|named| named.name.clone()).collect());
            let mut seen = BTreeSet::new();
            for named in include {
                let first_time = seen.insert(named.name.as_str());
                if first_time && !renamed.contains(named.name.as_str()) {
                    let by = format!("the custom field \"{}\"", named.name);
                    self.claim(claims, namespace, &named.name, &named.site, by, false);
                }
            }
        }
        let mut custom_rename = draft.custom_rename.clone();
        custom_rename.sort_by_key(|rename| rename.from.site.span.start);
        for rename in &custom_rename {
            let included = rules
                .include
                .as_ref()
                .is_none_or(|include| include.contains(&rename.from.name));
            if !included {
                self.report_at(
                    &rename.from.site,
                    MappingProblem::RenamedNotIncluded {
                        name: rename.from.name.clone(),
                    },
                );
                continue;
            }
            if !self.plain_name(&rename.to) {
                continue;
            }
            let by = rename.from.site.key.clone();
            if self.claim(
                claims,
                namespace,
                &rename.to.name,
                &rename.to.site,
                by,
                false,
            ) {
                rules
                    .custom_rename
                    .insert(rename.from.name.clone(), rename.to.name.clone());
                rules.custom_targets.insert(rename.to.name.clone());
            }
        }
    }

    /// Records that `name` is given at `site` (by what `by` describes); reports it
    /// when it is reserved or already given. Returns whether the claim stands.
    fn claim(
        &mut self,
        claims: &mut Claims,
        namespace: Namespace,
        name: &str,
        site: &Site,
        by: String,
        is_email_trait: bool,
    ) -> bool {
        if namespace == Namespace::Traits && name == "userId" {
            self.report_at(site, MappingProblem::ReservedUserId);
            return false;
        }
        if let Some(first) = claims.names.get(&(namespace, name.to_owned())) {
            let problem = MappingProblem::AlreadyUsed {
                name: name.to_owned(),
                by: first.clone(),
            };
            self.report_at(site, problem);
            return false;
        }
        claims.insert(namespace, name.to_owned(), by);
        if namespace == Namespace::Traits && name == "email" && !is_email_trait {
            claims.email = Some(self.error_at(
                site.span.clone(),
                Some(site.key.clone()),
                MappingProblem::ReservedEmail,
            ));
        }
        true
    }

    /// The standard trait a name of the file means, or the problem reported.
    fn trait_key(&mut self, named: &Named) -> Option<TraitKey> {
        let key = TraitKey::from_path(&named.name);
        if key.is_none() {
            self.report_at(
                &named.site,
                MappingProblem::UnknownTrait {
                    name: named.name.clone(),
                    closest: closest_trait(&named.name),
                },
            );
        }
        key
    }

    /// The payload name a rename gives `key`: a plain name for a trait,
    /// `parent.name` for a key of `address` or `company`.
    fn new_name(&mut self, key: TraitKey, to: &Named) -> Option<String> {
        match key.parent() {
            Some(parent) => {
                let leaf = to
                    .name
                    .strip_prefix(parent.path())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .filter(|leaf| !leaf.trim().is_empty() && !leaf.contains('.'));
                if leaf.is_none() {
                    let name = to.name.rsplit('.').next().unwrap_or(&to.name).to_owned();
                    self.report_at(
                        &to.site,
                        MappingProblem::RenameLeavesParent {
                            parent: parent.path(),
                            name,
                        },
                    );
                }
                leaf.map(str::to_owned)
            }
            None => self.plain_name(to).then(|| to.name.clone()),
        }
    }

    /// Whether a new name is free of dots, which would read as nesting; reports
    /// it when not.
    fn plain_name(&mut self, named: &Named) -> bool {
        let plain = !named.name.contains('.');
        if !plain {
            let problem = MappingProblem::DottedName {
                name: named.name.clone(),
            };
            self.report_at(&named.site, problem);
        }
        plain
    }
}

/// Names given so far, by namespace, with what gave each.
#[derive(Debug, Default)]
struct Claims {
    names: BTreeMap<(Namespace, String), String>,
    /// The name `email` given to something other than the email trait: an error
    /// only with the `email` strategy.
    email: Option<MappingError>,
}

impl Claims {
    fn insert(&mut self, namespace: Namespace, name: String, by: String) {
        self.names.entry((namespace, name)).or_insert(by);
    }
}

fn namespace_of(key: TraitKey) -> Namespace {
    match key.parent() {
        Some(TraitKey::Address) => Namespace::Address,
        Some(_) => Namespace::Company,
        None => Namespace::Traits,
    }
}

fn site(key: &Spanned<Cow<'_, str>>, path: &str) -> Site {
    Site {
        span: key.span(),
        key: path.to_owned(),
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn quoted(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

fn join(parent: &str, key: &str) -> String {
    format!("{parent}.{}", quoted(key))
}

/// Line and column (in characters), both from 1, of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Names people write for a standard trait, after commercetools' field names or
/// habit.
const ALIASES: &[(&str, TraitKey)] = &[
    ("dateOfBirth", TraitKey::Birthday),
    ("title", TraitKey::Honorific),
    ("id", TraitKey::CommercetoolsId),
    ("companyName", TraitKey::Company),
    ("customerGroup", TraitKey::CustomerGroupId),
    ("mobile", TraitKey::Phone),
    ("address.zip", TraitKey::AddressPostalCode),
    ("address.zipCode", TraitKey::AddressPostalCode),
    ("address.postcode", TraitKey::AddressPostalCode),
    ("address.streetName", TraitKey::AddressStreet),
    ("address.region", TraitKey::AddressState),
];

/// The valid name closest to an unknown one: a known alias, else the name at the
/// smallest edit distance (ignoring letter case) when it is close enough to be
/// what was meant.
fn closest_trait(name: &str) -> Option<&'static str> {
    if let Some((_, key)) = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
    {
        return Some(key.path());
    }
    let wanted = name.to_lowercase();
    let (distance, key) = TraitKey::ALL
        .into_iter()
        .map(|key| (edit_distance(&wanted, &key.path().to_lowercase()), key))
        .min_by_key(|(distance, _)| *distance)?;
    let close_enough = distance <= (wanted.chars().count() / 3).max(1);
    close_enough.then_some(key.path())
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, a_char) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 6), (2, 1));
        assert_eq!(position(text, 9), (2, 3)); // after the two-byte é
        assert_eq!(position(text, text.len()), (3, 1));
        assert_eq!(position(text, 8), (2, 2)); // inside é: its start
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("birthdate", "birthday"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("phone", "phone"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn the_closest_trait_is_an_alias_or_a_near_spelling() {
        assert_eq!(closest_trait("birthdate"), Some("birthday"));
        assert_eq!(closest_trait("firstname"), Some("firstName"));
        assert_eq!(closest_trait("dateOfBirth"), Some("birthday"));
        assert_eq!(closest_trait("address.zip"), Some("address.postalCode"));
        assert_eq!(closest_trait("adress"), Some("address"));
        assert_eq!(closest_trait("favouriteColour"), None);
    }

    #[test]
    fn keys_are_quoted_only_when_toml_needs_it() {
        assert_eq!(quoted("firstName"), "firstName");
        assert_eq!(quoted("address.postalCode"), "\"address.postalCode\"");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(
            join("traits.rename", "first name"),
            "traits.rename.\"first name\""
        );
    }
}
