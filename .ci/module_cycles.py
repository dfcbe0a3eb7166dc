# The module-level import graph of src/ (every `crate::` path outside #[cfg(test)] code) and its cycles, at the
# level of the top modules (1) or one below (2): `python3 .ci/module_cycles.py 2`. Exits 1 on a cycle.
# (cargo-modules' `dependencies --acyclic` works on items, where a type and its own methods already form a
# cycle, so it cannot answer this question.)
import os,re,sys
edges=set()
def modpath(p):
    rel=p[len('src/'):-3].split('/')
    if rel[-1] in ('mod','lib','main'): rel=rel[:-1]
    return rel
for root,_,fs in os.walk('src'):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(root,f); me=modpath(p)
        text=open(p).read().split('#[cfg(test)]')[0]
        for m in re.finditer(r'crate::(\w+)(?:::(\w+))?',text):
            a=m.group(1); b=m.group(2)
            tgt=[a]+([b] if b and b[0].islower() else [])
            edges.add(('::'.join(me[:2]),'::'.join(tgt[:2])))
level=int(sys.argv[1]) if len(sys.argv)>1 else 1
E={}
for a,b in edges:
    a='::'.join(a.split('::')[:level]); b='::'.join(b.split('::')[:level])
    if a!=b and not b.startswith(a+'::') and not a.startswith(b+'::'): E.setdefault(a,set()).add(b)
# cycles via Tarjan
idx={};low={};st=[];on=set();out=[];i=[0]
def sc(v):
    idx[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in E.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        c=[]
        while True:
            w=st.pop();on.discard(w);c.append(w)
            if w==v: break
        if len(c)>1: out.append(c)
for v in list(E): 
    if v not in idx: sc(v)
for a in sorted(E): print(a,'->',sorted(E[a]))
print('cycles:',out)
sys.exit(1 if out else 0)
