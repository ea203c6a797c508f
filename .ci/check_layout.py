"""docs/layout.md names every top-level entry of src/ (file or folder) and every
folder one level below, so the layout the docs describe is the tree. Exits 1
naming what is missing, or what the layout names that does not exist.
Usage: python3 .ci/check_layout.py"""
import os, re, sys
layout = open('docs/layout.md').read()
block = layout.split('```')[1]
missing = []
for entry in sorted(os.listdir('src')):
    path = os.path.join('src', entry)
    name = 'src/' + entry + ('/' if os.path.isdir(path) else '')
    if name not in block:
        missing.append(name)
    if os.path.isdir(path):
        for sub in sorted(os.listdir(path)):
            if os.path.isdir(os.path.join(path, sub)) and not re.search(r'(src/%s/%s/|\b%s/)' % (entry, sub, sub), block):
                missing.append(f'{name}{sub}/')
stale = [p for p in re.findall(r'(?<![\w/])(src/[\w/]+?)/?(?=\s)', block) if not os.path.exists(p)]
for m in missing:
    print(f'docs/layout.md does not name {m}')
for s in stale:
    print(f'docs/layout.md names {s}, which does not exist')
print(f'{sum(1 for _ in os.listdir("src"))} top-level entries of src/, {len(missing)} missing, {len(stale)} stale')
sys.exit(1 if missing or stale else 0)
