"""Import circles between the files of src/ (the house rule: none).

An edge A -> B when A names an item of B: `use`, `super::x`, `crate::a::b`, or
a name A itself re-exports from B. Not edges: a `mod` declaration, a `pub use`
re-export line (a facade), doc comments. Prints each circle and exits 1 if any.
Usage: python3 .ci/import_circles.py [src]"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
mods = {}
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f); rel = os.path.relpath(p, root)[:-3].split(os.sep)
        if rel[-1] in ('mod', 'lib', 'main'): rel = rel[:-1]
        mods[tuple(rel)] = p
# Re-exports (`pub use self::x::{A, B}` / `pub use x::A`): a facade, not a dependency;
# a path through one resolves to the module that defines the item.
reexp = {}
for m, p in mods.items():
    for sub, names in re.findall(r'^\s*pub(?:\([^)]*\))?\s+use\s+(?:self::)?(\w+(?:::\w+)*)::(\{[^}]*\}|\w+);', open(p).read(), flags=re.M):
        for name in re.findall(r'\w+', names):
            reexp[(m, name)] = tuple(list(m) + sub.split('::'))
def resolve(path):
    for n in range(len(path), -1, -1):
        t = tuple(path[:n])
        if t in mods:
            if n < len(path) and (t, path[n]) in reexp:
                return resolve(list(reexp[(t, path[n])]) + path[n+1:]) or t
            return t
edges = {m: set() for m in mods}
for m, p in mods.items():
    src = open(p).read()
    src = re.sub(r'#\[cfg\(test\)\]\s*mod tests\s*\{.*', '', src, flags=re.S)  # inline tests
    src = re.sub(r'//[^\n]*', '', src)  # comments (doc links are not imports)
    for (rm, name), target in reexp.items():  # a re-exported name used in the file that re-exports it
        if rm == m and re.search(r'(?<![:\w])' + name + r'\b', re.sub(r'^\s*pub(?:\([^)]*\))?\s+use\s+[^;]*;', '', src, flags=re.M)):
            t = resolve(list(target))
            if t and t != m: edges[m].add(t)
    src = re.sub(r'^\s*pub(?:\([^)]*\))?\s+use\s+[^;]*;', '', src, flags=re.M)  # re-exports
    is_dir = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
    base = list(m) if is_dir else list(m[:-1])  # what `super` of a child means... self module path
    here = list(m)
    for full in re.findall(r'\b((?:crate|super|self)(?:::\w+)+)', src):
        parts = full.split('::')
        if parts[0] == 'crate': path = parts[1:]
        else:
            cur = here[:]
            while parts and parts[0] in ('super', 'self'):
                if parts[0] == 'super': cur = cur[:-1]
                parts = parts[1:]
            path = cur + parts
        t = resolve(path)
        if t is not None and t != m and t != (): edges[m].add(t)
    # `use x::..` of a child module declared here
    for child in re.findall(r'^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+(\w+)::', src, flags=re.M):
        if child in ('std', 'crate', 'super', 'self', 'core'): continue
        t = tuple(here + [child])
        if t in mods: edges[m].add(t)
# cycles via Tarjan
idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(comp)
for v in mods:
    if v not in idx: sc(v)
for comp in out:
    print('circle:', ' <-> '.join('::'.join(x) for x in comp))
print(f'{len(mods)} files, {sum(map(len, edges.values()))} edges, {len(out)} circles')
sys.exit(1 if out else 0)
