//! Layering: no import cycle between source files, in any crate of the workspace.
//!
//! An edge goes from one file to another when non-test code in the first names
//! a `crate::`, `super::` or `self::` path that resolves into the second (in a
//! `use` tree, an expression, a type, a pattern or a macro's tokens). A `mod`
//! declaration is not an edge, and neither is a module re-exporting its own
//! descendants (`pub use self::child::X`); code under `#[cfg(test)]` and
//! `#[test]` functions is skipped. A path resolves to the file of its longest
//! prefix that is a module; when the item it names there is one that module
//! re-exports from a descendant (`pub use child::X`, `{X, Y as Z}`, `child::*`),
//! it resolves on to the file that defines the item, through every further
//! re-export, so a cycle cannot hide behind a `mod.rs`. Files in one strongly
//! connected component of more than one file form a cycle, and the test lists
//! each with the edges inside it (file:line → file, with the path), so a
//! developer can see what to move.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, Span, TokenStream, TokenTree};
use syn::ext::IdentExt as _;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, ItemMod, ItemUse, Meta, UseTree};

// ---------------------------------------------------------------------------
// Scanning one file
// ---------------------------------------------------------------------------

/// A `mod name;` declaration that loads another file.
struct ModDecl {
    /// The declared module's path from the crate root.
    module: Vec<String>,
    /// Where its file may be, in rustc's order.
    candidates: Vec<PathBuf>,
    /// A `#[path]` file owns its directory like a `mod.rs` does.
    explicit_path: bool,
    line: usize,
}

/// A `crate::`/`super::`/`self::` path seen in non-test code.
struct Ref {
    /// The module the path is written in.
    module: Vec<String>,
    /// The path's segments, the first being `crate`, `super` or `self`.
    segments: Vec<String>,
    line: usize,
    /// Part of a `pub use` (any visibility but private).
    reexport: bool,
}

/// A module-level `use` with a visibility, as written (resolved once every
/// module is known).
struct Reexport {
    /// The module that re-exports.
    module: Vec<String>,
    /// The name it publishes, or `None` for a glob (`pub use child::*`).
    name: Option<String>,
    /// The path re-exported (for a glob, the module whose items are).
    segments: Vec<String>,
}

/// Walks one file's syntax tree (skipping test code) and collects its module
/// declarations, its inline modules and the paths it names.
struct Scanner<'a> {
    /// The file being scanned.
    file: &'a Path,
    /// The directory that holds the children of `module`.
    dir: PathBuf,
    /// The module being visited (grows inside inline `mod x { }`).
    module: Vec<String>,
    /// How deep inside inline modules the visit is.
    inline_depth: usize,
    decls: Vec<ModDecl>,
    inline: Vec<Vec<String>>,
    refs: Vec<Ref>,
    reexports: Vec<Reexport>,
    /// Items defined at module level: (module, name).
    defined: Vec<(Vec<String>, String)>,
}

fn line_of(span: Span) -> usize {
    span.start().line
}

fn is_anchor(segment: &str) -> bool {
    matches!(segment, "crate" | "super" | "self")
}

/// True for a `cfg` predicate that holds only under `cfg(test)`: `test` or
/// `all(.., test, ..)`.
fn cfg_is_test_only(meta: &Meta) -> bool {
    match meta {
        Meta::Path(path) => path.is_ident("test"),
        Meta::List(list) if list.path.is_ident("all") => list
            .parse_args_with(syn::punctuated::Punctuated::<Meta, syn::Token![,]>::parse_terminated)
            .map(|inner| inner.iter().any(cfg_is_test_only))
            .unwrap_or(false),
        _ => false,
    }
}

/// True when the attributes make an item test-only: `#[cfg(test)]` (or
/// `cfg(all(test, ..))`), `#[test]`, `#[tokio::test]` and the like.
fn is_test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        if path.is_ident("cfg") {
            return attr.parse_args::<Meta>().map(|meta| cfg_is_test_only(&meta)).unwrap_or(false);
        }
        path.segments.last().is_some_and(|last| last.ident == "test")
    })
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The `#[path = "..."]` of a module declaration, if any.
fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find(|attr| attr.path().is_ident("path")).and_then(|attr| match &attr.meta {
        Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Every leaf of a `use` tree as a full path, with the line of its last part.
fn flatten_use(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.unraw().to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let mut full = prefix.clone();
            if n.ident != "self" || full.is_empty() {
                full.push(n.ident.unraw().to_string());
            }
            out.push((full, line_of(n.ident.span())));
        }
        UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" || full.is_empty() {
                full.push(r.ident.unraw().to_string());
            }
            out.push((full, line_of(r.ident.span())));
        }
        UseTree::Glob(g) => out.push((prefix.clone(), line_of(g.star_token.span))),
        UseTree::Group(g) => {
            for item in &g.items {
                flatten_use(item, prefix, out);
            }
        }
    }
}

/// Every leaf of a re-exporting `use` tree: the name it publishes (`None` for a
/// glob) and the path it names. `x::{self as y}` publishes `y` for `x`; `as _`
/// publishes nothing.
fn reexport_leaves(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Option<String>, Vec<String>)>) {
    let (ident, published) = match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.unraw().to_string());
            reexport_leaves(&p.tree, prefix, out);
            prefix.pop();
            return;
        }
        UseTree::Group(g) => {
            for item in &g.items {
                reexport_leaves(item, prefix, out);
            }
            return;
        }
        UseTree::Glob(_) => {
            out.push((None, prefix.clone()));
            return;
        }
        UseTree::Name(n) => (&n.ident, &n.ident),
        UseTree::Rename(r) => (&r.ident, &r.rename),
    };
    let mut source = prefix.clone();
    if ident != "self" {
        source.push(ident.unraw().to_string());
    }
    let name = if published == "self" { prefix.last().cloned() } else { Some(published.unraw().to_string()) };
    if let Some(name) = name.filter(|n| n != "_")
        && !source.is_empty()
    {
        out.push((Some(name), source));
    }
}

/// The name a module-level item defines in its module's namespace, if any.
fn defined_name(item: &Item) -> Option<String> {
    let ident = match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Mod(i) => &i.ident,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::TraitAlias(i) => &i.ident,
        Item::Type(i) => &i.ident,
        Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.unraw().to_string()).filter(|n| n != "_")
}

fn is_path_sep(tokens: &[TokenTree], at: usize) -> bool {
    matches!(
        (tokens.get(at), tokens.get(at + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

impl Scanner<'_> {
    fn record(&mut self, segments: Vec<String>, line: usize, reexport: bool) {
        if segments.len() > 1 && segments.first().is_some_and(|s| is_anchor(s)) {
            self.refs.push(Ref { module: self.module.clone(), segments, line, reexport });
        }
    }

    /// Finds `crate :: a :: b` (also `super`/`self`) in a macro's tokens;
    /// `$crate` is left alone.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident) if is_anchor(&ident.to_string()) => {
                    let after_dollar = i > 0 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
                    let after_sep = i > 0 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    while is_path_sep(&tokens, j) {
                        match tokens.get(j + 2) {
                            Some(TokenTree::Ident(next)) => {
                                segments.push(next.unraw().to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if !after_dollar && !after_sep {
                        self.record(segments, line_of(ident.span()), false);
                    }
                    i = j.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn module_decl(&mut self, item: &ItemMod) {
        let name = item.ident.unraw().to_string();
        let mut module = self.module.clone();
        module.push(name.clone());
        let line = line_of(item.ident.span());
        match &item.content {
            Some((_, items)) => {
                self.inline.push(module.clone());
                let inner_dir = self.dir.join(&name);
                let outer_dir = std::mem::replace(&mut self.dir, inner_dir);
                let outer_module = std::mem::replace(&mut self.module, module);
                self.inline_depth += 1;
                self.module_items(items);
                self.inline_depth -= 1;
                self.module = outer_module;
                self.dir = outer_dir;
            }
            None => {
                let (candidates, explicit_path) = match path_attr(&item.attrs) {
                    Some(relative) => {
                        let base = if self.inline_depth == 0 {
                            self.file.parent().map(Path::to_path_buf).unwrap_or_default()
                        } else {
                            self.dir.clone()
                        };
                        (vec![base.join(relative)], true)
                    }
                    None => (vec![self.dir.join(format!("{name}.rs")), self.dir.join(&name).join("mod.rs")], false),
                };
                self.decls.push(ModDecl { module, candidates, explicit_path, line });
            }
        }
    }

    /// Visits the items of the module being scanned, first noting what it
    /// defines and re-exports.
    fn module_items(&mut self, items: &[Item]) {
        for item in items.iter().filter(|item| !is_test_only(item_attrs(item))) {
            if let Item::Use(u) = item
                && !matches!(u.vis, syn::Visibility::Inherited)
                && u.leading_colon.is_none()
            {
                let mut leaves = Vec::new();
                reexport_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                for (name, segments) in leaves {
                    self.reexports.push(Reexport { module: self.module.clone(), name, segments });
                }
            } else if let Some(name) = defined_name(item) {
                self.defined.push((self.module.clone(), name));
            }
        }
        for item in items {
            self.visit_item(item);
        }
    }

    fn use_item(&mut self, item: &ItemUse) {
        if item.leading_colon.is_some() {
            return;
        }
        let reexport = !matches!(item.vis, syn::Visibility::Inherited);
        let mut leaves = Vec::new();
        flatten_use(&item.tree, &mut Vec::new(), &mut leaves);
        for (segments, line) in leaves {
            self.record(segments, line, reexport);
        }
    }
}

impl<'ast> Visit<'ast> for Scanner<'_> {
    fn visit_file(&mut self, file: &'ast syn::File) {
        self.module_items(&file.items);
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if is_test_only(item_attrs(item)) {
            return;
        }
        match item {
            Item::Mod(m) => self.module_decl(m),
            Item::Use(u) => self.use_item(u),
            _ => visit::visit_item(self, item),
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs: &[Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_test_only(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attrs: &[Attribute] = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_test_only(attrs) {
            visit::visit_trait_item(self, item);
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !is_test_only(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    /// `pub(crate)`, `pub(super)` and `pub(in crate::a)` say who may see an
    /// item, not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    /// Attributes (docs, derives, cfgs) name no code.
    fn visit_attribute(&mut self, _: &'ast Attribute) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none()
            && let Some(first) = path.segments.first()
        {
            let segments = path.segments.iter().map(|s| s.ident.unraw().to_string()).collect();
            self.record(segments, line_of(first.ident.span()), false);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.scan_tokens(mac.tokens.clone());
    }
}

// ---------------------------------------------------------------------------
// One crate: its module files, the edges between them and their cycles
// ---------------------------------------------------------------------------

/// A path from one file into another.
#[derive(Clone, Debug)]
struct Edge {
    from: PathBuf,
    line: usize,
    to: PathBuf,
    text: String,
}

/// What checking one crate root found.
#[derive(Debug)]
struct CrateReport {
    /// The crate root, relative to the base directory.
    root: String,
    /// Every module file reached from the root.
    files: BTreeSet<PathBuf>,
    edges: Vec<Edge>,
    /// Each cycle's files (sorted), largest first.
    cycles: Vec<Vec<PathBuf>>,
    /// Files that could not be read or parsed, and `mod` declarations without a file.
    problems: Vec<String>,
}

fn display(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

/// Resolves a path written in `module` to the absolute module path it names,
/// or `None` when `super` climbs above the crate root.
fn absolute(module: &[String], segments: &[String]) -> Option<Vec<String>> {
    let mut rest = segments.iter();
    let mut out = match rest.next().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => module.to_vec(),
        Some("super") => {
            let mut m = module.to_vec();
            m.pop()?;
            m
        }
        _ => return None,
    };
    let mut rest = rest.peekable();
    while rest.peek().is_some_and(|s| *s == "super") {
        rest.next();
        out.pop()?;
    }
    out.extend(rest.cloned());
    Some(out)
}

/// The modules of one crate, with what each defines and re-exports from its
/// descendants.
#[derive(Default)]
struct Modules {
    /// Each module's file (an inline module's is the file it is written in).
    files: HashMap<Vec<String>, PathBuf>,
    /// Modules declared with `mod x;` whose file is missing.
    missing: HashSet<Vec<String>>,
    /// Names defined by a module's own items.
    defined: HashMap<Vec<String>, HashSet<String>>,
    /// `pub use child::X as Y`: module → published name → the absolute path it
    /// stands for (the first, if `cfg`s give several).
    named: HashMap<Vec<String>, HashMap<String, Vec<String>>>,
    /// `pub use child::*`: module → the descendant modules it re-exports.
    globs: HashMap<Vec<String>, Vec<Vec<String>>>,
}

impl Modules {
    /// The longest prefix of `target` that is a module: its length and file;
    /// `None` when that prefix is a missing module or there is none.
    fn locate(&self, target: &[String]) -> Option<(usize, &PathBuf)> {
        (0..=target.len())
            .rev()
            .map(|n| &target[..n])
            .find_map(|prefix| {
                if self.missing.contains(prefix) {
                    Some(None)
                } else {
                    self.files.get(prefix).map(|f| Some((prefix.len(), f)))
                }
            })
            .flatten()
    }

    /// True when `path` lies strictly inside `module`'s descendants: its
    /// longest module prefix is a module below `module`.
    fn is_below(&self, module: &[String], path: &[String]) -> bool {
        self.locate(path).is_some_and(|(depth, _)| depth > module.len() && path[..module.len()] == *module)
    }

    /// Records a re-export written in `r.module`, if it names a descendant.
    /// A path not starting with `crate`/`super`/`self` counts when its first
    /// segment is a child module (`pub use child::X`).
    fn add_reexport(&mut self, r: Reexport) {
        let source = match r.segments.first() {
            Some(first) if is_anchor(first) => absolute(&r.module, &r.segments),
            Some(first) => {
                let mut child = r.module.clone();
                child.push(first.clone());
                self.files.contains_key(&child).then(|| [r.module.as_slice(), r.segments.as_slice()].concat())
            }
            None => None,
        };
        let Some(source) = source.filter(|s| self.is_below(&r.module, s)) else { return };
        match r.name {
            Some(name) => {
                self.named.entry(r.module).or_default().entry(name).or_insert(source);
            }
            None if self.files.contains_key(&source) => self.globs.entry(r.module).or_default().push(source),
            None => {}
        }
    }

    /// True when `module` has an item called `name`, its own or re-exported
    /// from a descendant.
    fn provides(&self, module: &[String], name: &str) -> bool {
        self.defined.get(module).is_some_and(|d| d.contains(name))
            || self.named.get(module).is_some_and(|n| n.contains_key(name))
            || self.globs.get(module).is_some_and(|globs| globs.iter().any(|g| self.provides(g, name)))
    }

    /// Where `module`'s item `name` comes from when the module re-exports it
    /// from a descendant: a named re-export first, then (unless the module
    /// defines `name` itself) the first glob that provides it.
    fn origin(&self, module: &[String], name: &str) -> Option<Vec<String>> {
        if let Some(source) = self.named.get(module).and_then(|n| n.get(name)) {
            return Some(source.clone());
        }
        if self.defined.get(module).is_some_and(|d| d.contains(name)) {
            return None;
        }
        self.globs.get(module)?.iter().find(|g| self.provides(g, name)).map(|g| {
            let mut source = g.clone();
            source.push(name.to_string());
            source
        })
    }

    /// Rewrites `target` through the re-exports of the modules it passes, so
    /// it names the item where it is defined. Each step moves into a strict
    /// descendant, so this ends.
    fn follow(&self, mut target: Vec<String>) -> Vec<String> {
        while let Some((depth, _)) = self.locate(&target)
            && let Some(name) = target.get(depth)
            && let Some(mut source) = self.origin(&target[..depth], name)
        {
            source.extend_from_slice(&target[depth + 1..]);
            target = source;
        }
        target
    }
}

/// Follows `mod` declarations from `root_file`, then resolves every path into
/// an edge and finds the cycles. Paths in messages are shown relative to `base`.
fn check_crate(root_file: &Path, base: &Path) -> CrateReport {
    let mut modules = Modules::default();
    let mut reexports = Vec::new();
    let mut problems = Vec::new();
    let mut files = BTreeSet::new();
    let mut refs: Vec<(PathBuf, Ref)> = Vec::new();

    modules.files.insert(Vec::new(), root_file.to_path_buf());
    let mut queue = VecDeque::from([(root_file.to_path_buf(), Vec::<String>::new(), true)]);
    while let Some((file, module, owns_dir)) = queue.pop_front() {
        if !files.insert(file.clone()) {
            continue;
        }
        let parsed = std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|src| syn::parse_file(&src).map_err(|e| format!("line {}: {e}", line_of(e.span()))));
        let ast = match parsed {
            Ok(ast) => ast,
            Err(e) => {
                problems.push(format!("{}: cannot read or parse: {e}", display(&file, base)));
                continue;
            }
        };
        if is_test_only(&ast.attrs) {
            continue;
        }
        let parent = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = match (owns_dir, file.file_stem()) {
            (false, Some(stem)) => parent.join(stem),
            _ => parent,
        };
        let mut scanner = Scanner {
            file: &file,
            dir,
            module,
            inline_depth: 0,
            decls: Vec::new(),
            inline: Vec::new(),
            refs: Vec::new(),
            reexports: Vec::new(),
            defined: Vec::new(),
        };
        scanner.visit_file(&ast);
        let Scanner { decls, inline, refs: found, reexports: published, defined, .. } = scanner;
        for module in inline {
            modules.files.insert(module, file.clone());
        }
        for (module, name) in defined {
            modules.defined.entry(module).or_default().insert(name);
        }
        reexports.extend(published);
        for decl in decls {
            match decl.candidates.iter().find(|c| c.is_file()) {
                Some(child) => {
                    let owns = decl.explicit_path || child.file_name().is_some_and(|n| n == "mod.rs");
                    modules.files.insert(decl.module.clone(), child.clone());
                    queue.push_back((child.clone(), decl.module, owns));
                }
                None => {
                    let tried: Vec<String> = decl.candidates.iter().map(|c| display(c, base)).collect();
                    problems.push(format!(
                        "{}:{}: `mod {}` has no file ({})",
                        display(&file, base),
                        decl.line,
                        decl.module.join("::"),
                        tried.join(" or ")
                    ));
                    modules.missing.insert(decl.module);
                }
            }
        }
        refs.extend(found.into_iter().map(|r| (file.clone(), r)));
    }

    for r in reexports {
        modules.add_reexport(r);
    }

    let mut edges = Vec::new();
    for (file, r) in refs {
        let Some(target) = absolute(&r.module, &r.segments) else { continue };
        // A module re-exporting its own descendants is how it publishes them.
        if r.reexport && modules.is_below(&r.module, &target) {
            continue;
        }
        let Some((_, to)) = modules.locate(&modules.follow(target)) else { continue };
        if *to == file {
            continue;
        }
        edges.push(Edge { from: file, line: r.line, to: to.clone(), text: r.segments.join("::") });
    }

    let cycles = strongly_connected(&files, &edges);
    CrateReport { root: display(root_file, base), files, edges, cycles, problems }
}

/// Tarjan's algorithm; returns the components of more than one file.
fn strongly_connected(files: &BTreeSet<PathBuf>, edges: &[Edge]) -> Vec<Vec<PathBuf>> {
    struct Tarjan<'a> {
        nodes: Vec<&'a PathBuf>,
        next: Vec<BTreeSet<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<PathBuf>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.counter);
            self.low[v] = self.counter;
            self.counter += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            let next: Vec<usize> = self.next[v].iter().copied().collect();
            for w in next {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    component.push(self.nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }

    let nodes: Vec<&PathBuf> = files.iter().collect();
    let id: HashMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let mut next = vec![BTreeSet::new(); nodes.len()];
    for edge in edges {
        if let (Some(&a), Some(&b)) = (id.get(&edge.from), id.get(&edge.to)) {
            next[a].insert(b);
        }
    }
    let n = nodes.len();
    let mut t = Tarjan {
        nodes,
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    t.out
}

impl CrateReport {
    /// The cycles and problems in a few lines each; empty when there are none.
    fn describe(&self, base: &Path) -> String {
        let mut out = String::new();
        for problem in &self.problems {
            let _ = writeln!(out, "  problem: {problem}");
        }
        for (n, cycle) in self.cycles.iter().enumerate() {
            let names: Vec<String> = cycle.iter().map(|f| display(f, base)).collect();
            let _ = writeln!(out, "  cycle {} ({} files): {}", n + 1, cycle.len(), names.join(", "));
            let members: BTreeSet<&PathBuf> = cycle.iter().collect();
            // One line per (from, to) pair: its first occurrence and how many more.
            let mut pairs: BTreeMap<(&PathBuf, &PathBuf), Vec<&Edge>> = BTreeMap::new();
            for edge in &self.edges {
                if members.contains(&edge.from) && members.contains(&edge.to) {
                    pairs.entry((&edge.from, &edge.to)).or_default().push(edge);
                }
            }
            let mut lines: Vec<(&PathBuf, &Edge, usize)> = pairs
                .values()
                .filter_map(|list| list.iter().min_by_key(|e| e.line).map(|first| (&first.from, *first, list.len())))
                .collect();
            lines.sort_by_key(|(from, first, _)| (*from, first.line));
            for (from, first, count) in lines {
                let more = if count > 1 { format!(" (+{} more)", count - 1) } else { String::new() };
                let _ = writeln!(
                    out,
                    "    {}:{} → {}  `{}`{more}",
                    display(from, base),
                    first.line,
                    display(&first.to, base),
                    first.text
                );
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The workspace
// ---------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the workspace").to_path_buf()
}

/// The `members = [..]` of the workspace's Cargo.toml.
fn workspace_members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read the workspace Cargo.toml");
    let start = manifest.find("members").expect("the workspace Cargo.toml lists its members");
    let open = start + manifest[start..].find('[').expect("members = [ ... ]");
    let close = open + manifest[open..].find(']').expect("members = [ ... ]");
    let members: Vec<PathBuf> = manifest[open + 1..close]
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| {
            assert!(!m.contains('*'), "glob workspace members ({m}) are not supported by this test");
            root.join(m)
        })
        .collect();
    assert!(!members.is_empty(), "the workspace has no members");
    members
}

/// The crate roots of one package: its library and binaries, `[[bin]]`-style
/// `path =` targets, and each file in tests/, benches/ and examples/.
fn crate_roots(member: &Path) -> Vec<PathBuf> {
    let mut roots = BTreeSet::new();
    for conventional in ["src/lib.rs", "src/main.rs"] {
        roots.insert(member.join(conventional));
    }
    for dir in ["src/bin", "tests", "benches", "examples"] {
        if let Ok(entries) = std::fs::read_dir(member.join(dir)) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "rs") {
                    roots.insert(path);
                } else if path.join("main.rs").is_file() {
                    roots.insert(path.join("main.rs"));
                }
            }
        }
    }
    let manifest = std::fs::read_to_string(member.join("Cargo.toml")).expect("read a member's Cargo.toml");
    let mut in_target = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_target = matches!(line, "[lib]" | "[[bin]]" | "[[test]]" | "[[bench]]" | "[[example]]");
        } else if in_target
            && let Some(value) = line.strip_prefix("path").map(str::trim_start).and_then(|v| v.strip_prefix('='))
        {
            roots.insert(member.join(value.trim().trim_matches('"')));
        }
    }
    roots.into_iter().filter(|r| r.is_file()).collect()
}

#[test]
fn no_import_cycle_between_files_in_any_crate() {
    let root = workspace_root();
    let (mut crates, mut files) = (0, 0);
    let mut failures = String::new();
    for member in workspace_members(&root) {
        for crate_root in crate_roots(&member) {
            let report = check_crate(&crate_root, &root);
            crates += 1;
            files += report.files.len();
            let found = report.describe(&root);
            if !found.is_empty() {
                let _ = write!(failures, "crate {}:\n{found}", report.root);
            }
        }
    }
    assert!(
        crates >= 4 && files > crates,
        "found only {crates} crate roots and {files} files under {}",
        root.display()
    );
    assert!(
        failures.is_empty(),
        "import cycles between files (a `crate::`/`super::`/`self::` path from one file into another, outside test \
         code; break each by moving what the files share into a file that neither imports), and module files the \
         check could not read:\n{failures}"
    );
    println!("no import cycle in {crates} crates ({files} files)");
}

// ---------------------------------------------------------------------------
// The checker on small made-up crates
// ---------------------------------------------------------------------------

/// A crate written to a fresh temporary directory, removed on drop.
struct TempCrate {
    dir: PathBuf,
}

impl TempCrate {
    fn new(files: &[(&str, &str)]) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("layers-test-{}-{n}-{nanos}", std::process::id()));
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("a file has a directory")).expect("create a temp directory");
            std::fs::write(&path, text).expect("write a temp file");
        }
        TempCrate { dir }
    }

    fn check(&self) -> CrateReport {
        check_crate(&self.dir.join("src/lib.rs"), &self.dir)
    }
}

impl Drop for TempCrate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl CrateReport {
    fn cycle_names(&self, base: &Path) -> Vec<Vec<String>> {
        self.cycles.iter().map(|c| c.iter().map(|f| display(f, base)).collect()).collect()
    }

    fn edge_lines(&self, base: &Path) -> Vec<String> {
        self.edges
            .iter()
            .map(|e| format!("{}:{} -> {} {}", display(&e.from, base), e.line, display(&e.to, base), e.text))
            .collect()
    }
}

#[test]
fn checker_reports_a_two_file_cycle() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "use crate::b::X;\npub struct Y(pub X);\n"),
        ("src/b.rs", "use crate::a::Y;\npub struct X;\npub fn f(_: Y) {}\n"),
    ]);
    let report = t.check();
    assert_eq!(report.cycle_names(&t.dir), [["src/a.rs", "src/b.rs"]], "{report:#?}");
    let text = report.describe(&t.dir);
    assert!(text.contains("src/a.rs:1 → src/b.rs  `crate::b::X`"), "{text}");
    assert!(text.contains("src/b.rs:1 → src/a.rs  `crate::a::Y`"), "{text}");
}

#[test]
fn checker_allows_a_mod_rs_reexporting_a_child_that_uses_its_parent() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod p;\n"),
        ("src/p/mod.rs", "mod child;\npub use child::Thing;\npub use self::child::Other;\npub struct Something;\n"),
        ("src/p/child.rs", "use super::Something;\npub struct Thing(pub Something);\npub struct Other;\n"),
    ]);
    let report = t.check();
    assert!(report.problems.is_empty() && report.cycles.is_empty(), "{report:#?}");
    assert_eq!(report.edge_lines(&t.dir), ["src/p/child.rs:1 -> src/p/mod.rs super::Something"]);
}

#[test]
fn checker_ignores_test_code() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "use crate::b::X;\npub fn y() -> X { X }\n"),
        (
            "src/b.rs",
            "pub struct X;\n\
             #[cfg(test)]\nmod tests {\n    use crate::a::y;\n    #[test]\n    fn t() { y(); }\n}\n\
             #[test]\nfn top_level() { crate::a::y(); }\n\
             #[cfg(all(test, unix))]\nfn helper() { crate::a::y(); }\n",
        ),
    ]);
    let report = t.check();
    assert!(report.cycles.is_empty(), "{report:#?}");
    assert_eq!(report.edge_lines(&t.dir), ["src/a.rs:1 -> src/b.rs crate::b::X"]);
}

#[test]
fn checker_resolves_super_super() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\n"),
        ("src/a.rs", "pub mod b;\nuse crate::a::b::c::Z;\npub struct X(pub Z);\n"),
        ("src/a/b.rs", "pub mod c;\n"),
        ("src/a/b/c.rs", "use super::super::X;\npub struct Z;\npub fn f(_: &X) {}\n"),
    ]);
    let report = t.check();
    assert_eq!(
        report.edge_lines(&t.dir),
        ["src/a.rs:2 -> src/a/b/c.rs crate::a::b::c::Z", "src/a/b/c.rs:1 -> src/a.rs super::super::X"]
    );
    assert_eq!(report.cycle_names(&t.dir), [["src/a/b/c.rs", "src/a.rs"]]);
}

#[test]
fn checker_counts_expression_type_and_macro_paths() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod m;\npub mod n;\n"),
        ("src/a.rs", "pub fn g() {\n    crate::m::f();\n}\n"),
        ("src/m.rs", "pub fn f() {}\npub fn h() -> Option<crate::a::Thing> {\n    None\n}\n"),
        ("src/n.rs", "pub(crate) fn k(x: u8) {\n    println!(\"{}\", crate::m::f2(x));\n}\n"),
    ]);
    let report = t.check();
    assert_eq!(
        report.edge_lines(&t.dir),
        [
            "src/a.rs:2 -> src/m.rs crate::m::f",
            "src/m.rs:2 -> src/a.rs crate::a::Thing",
            "src/n.rs:2 -> src/m.rs crate::m::f2"
        ]
    );
    assert_eq!(report.cycle_names(&t.dir), [["src/a.rs", "src/m.rs"]]);
}

#[test]
fn checker_handles_nested_use_groups_inline_modules_and_visibility() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod c;\npub mod d;\npub struct Root;\n"),
        (
            "src/a.rs",
            "pub(in crate::c) struct A;\nuse crate::{Root, c::{self, d::E}};\nmod inner {\n    use super::A;\n}\n",
        ),
        ("src/c.rs", "pub mod d;\n"),
        ("src/c/d.rs", "pub struct E;\n"),
        ("src/d.rs", "mod missing;\n"),
    ]);
    let report = t.check();
    assert_eq!(
        report.edge_lines(&t.dir),
        [
            "src/a.rs:2 -> src/lib.rs crate::Root",
            "src/a.rs:2 -> src/c.rs crate::c",
            "src/a.rs:2 -> src/c/d.rs crate::c::d::E"
        ]
    );
    assert_eq!(report.problems.len(), 1, "{report:#?}");
    assert!(report.problems[0].starts_with("src/d.rs:1: `mod d::missing` has no file"), "{report:#?}");
}

#[test]
fn checker_follows_a_reexport_to_the_file_that_defines_the_item() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a/mod.rs", "mod x;\npub use x::X;\n"),
        ("src/a/x.rs", "use crate::b::Y;\npub struct X(pub Y);\n"),
        ("src/b.rs", "use crate::a::X;\npub struct Y;\npub fn f(_: X) {}\n"),
    ]);
    let report = t.check();
    assert_eq!(report.cycle_names(&t.dir), [["src/a/x.rs", "src/b.rs"]], "{report:#?}");
    let text = report.describe(&t.dir);
    assert!(text.contains("src/a/x.rs:1 → src/b.rs  `crate::b::Y`"), "{text}");
    assert!(text.contains("src/b.rs:1 → src/a/x.rs  `crate::a::X`"), "{text}");
}

#[test]
fn checker_finds_no_cycle_through_a_reexport_used_one_way() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a/mod.rs", "mod x;\npub use x::X;\n"),
        ("src/a/x.rs", "pub struct X;\n"),
        ("src/b.rs", "use crate::a::X;\npub fn f(_: X) {}\n"),
    ]);
    let report = t.check();
    assert!(report.problems.is_empty() && report.cycles.is_empty(), "{report:#?}");
    assert_eq!(report.edge_lines(&t.dir), ["src/b.rs:1 -> src/a/x.rs crate::a::X"]);
}

#[test]
fn checker_follows_groups_renames_globs_and_chains_of_reexports() {
    let t = TempCrate::new(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/a/mod.rs",
            "mod x;\nmod y;\nmod z;\n\
             pub use self::x::{X, X2 as Renamed};\npub(crate) use y::*;\npub use z::Deep;\npub use x as ex;\n\
             pub struct Own;\n",
        ),
        ("src/a/x.rs", "pub struct X;\npub struct X2;\npub fn g() -> super::Own {\n    super::Own\n}\n"),
        ("src/a/y.rs", "pub struct G;\n"),
        ("src/a/z.rs", "mod w;\npub use w::Deep;\n"),
        ("src/a/z/w.rs", "pub struct Deep;\npub fn h() -> super::super::Deep {\n    Deep\n}\n"),
        (
            "src/b.rs",
            "use crate::a::{Deep, G, Own, Renamed};\npub fn f() {\n    let _ = (crate::a::X, crate::a::ex::g(), crate::a::Nope);\n}\n",
        ),
    ]);
    let report = t.check();
    assert!(report.problems.is_empty() && report.cycles.is_empty(), "{report:#?}");
    assert_eq!(
        report.edge_lines(&t.dir),
        [
            "src/b.rs:1 -> src/a/z/w.rs crate::a::Deep",
            "src/b.rs:1 -> src/a/y.rs crate::a::G",
            "src/b.rs:1 -> src/a/mod.rs crate::a::Own",
            "src/b.rs:1 -> src/a/x.rs crate::a::Renamed",
            "src/b.rs:3 -> src/a/x.rs crate::a::X",
            "src/b.rs:3 -> src/a/x.rs crate::a::ex::g",
            "src/b.rs:3 -> src/a/mod.rs crate::a::Nope",
            "src/a/x.rs:3 -> src/a/mod.rs super::Own",
            "src/a/x.rs:4 -> src/a/mod.rs super::Own"
        ]
    );
}

// ---------------------------------------------------------------------------
// The worker's layers, as its lib.rs lists them
// ---------------------------------------------------------------------------

/// The worker's top-level modules by layer, lowest first, read from the
/// table in `worker/src/lib.rs`'s `//!` (a row `| [`a`], [`b`] | … |` is one
/// layer), so the documented order is the one enforced.
fn documented_layers(lib_rs: &str) -> BTreeMap<String, usize> {
    let rows = lib_rs.lines().filter_map(|l| l.strip_prefix("//! | ")).filter(|row| row.starts_with("[`"));
    let mut layers = BTreeMap::new();
    for (rank, row) in rows.enumerate() {
        let first_cell = row.split(" | ").next().unwrap_or_default();
        for name in first_cell.split("[`").skip(1).filter_map(|s| s.split("`]").next()) {
            layers.insert(name.to_owned(), rank);
        }
    }
    layers
}

#[test]
fn the_worker_imports_only_from_layers_below_as_lib_rs_documents() {
    let root = workspace_root();
    let src = root.join("worker/src");
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).expect("worker/src/lib.rs");
    let layers = documented_layers(&lib_rs);
    assert!(layers.len() >= 8, "lib.rs lists too few layers: {layers:?}");
    let report = check_crate(&src.join("lib.rs"), &root);
    let layer_of = |file: &Path| {
        let top = file.strip_prefix(&src).ok()?.components().next()?.as_os_str().to_str()?;
        let name = top.strip_suffix(".rs").unwrap_or(top);
        layers.get(name).map(|rank| (name.to_owned(), *rank))
    };
    let mut upward = String::new();
    for edge in &report.edges {
        if let (Some((from, low)), Some((to, high))) = (layer_of(&edge.from), layer_of(&edge.to))
            && high > low
        {
            let _ = writeln!(upward, "  {}:{} ({from}) → {to}: `{}`", display(&edge.from, &root), edge.line, edge.text);
        }
    }
    let unlisted: Vec<String> = report
        .files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "lib.rs") && layer_of(f).is_none())
        .map(|f| display(f, &root))
        .collect();
    assert!(unlisted.is_empty(), "files in no layer of lib.rs's table: {unlisted:?}");
    assert!(upward.is_empty(), "imports from a higher layer than lib.rs's table allows:\n{upward}");
}

#[test]
fn the_layer_table_is_read_in_order() {
    let doc =
        "//! | layer | what |\n//! | --- | --- |\n//! | [`limits`], [`shutdown`] | leaves |\n//! | [`config`] | c |\n";
    let layers = documented_layers(doc);
    assert_eq!(layers.get("limits"), Some(&0));
    assert_eq!(layers.get("shutdown"), Some(&0));
    assert_eq!(layers.get("config"), Some(&1));
    assert_eq!(layers.len(), 3);
}
