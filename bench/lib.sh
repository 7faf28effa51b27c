# Shared by the bench scripts (sourced): the release binary, timing helpers
# and the hello-world module.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# KPACKFS=/path/to/kpackfs: run another build (an older commit's, for an
# A/B in one run) instead of this tree's.
if [ -n "${KPACKFS:-}" ]; then
  kp=$KPACKFS
else
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
  kp="$repo/target/release/kpackfs"
fi

now() { date +%s.%N; }

# debian_hosts: scheme://host of every Debian source in the shipped
# sources.yml (the canonical URLs manifests name; no host is written here).
debian_hosts() {
  awk '/^- name: debian-/ {d=1; next} /^- name:/ {d=0} d && /^  url: / {print $2}' \
    "$repo/kernel-package-lists/sources.yml" | sed -E 's#^(https?://[^/]+).*#\1#' | sort -u
}
# debian_mirror_args PORT: one --mirror per Debian host, to a loopback mirror.
debian_mirror_args() { local h; for h in $(debian_hosts); do printf -- '--mirror\n%s=http://127.0.0.1:%s\n' "$h" "$1"; done; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# write_hello DIR: a one-file module and its Kbuild line.
write_hello() {
  mkdir -p "$1"
  cat > "$1/hello.c" <<'EOF'
#include <linux/module.h>
#include <linux/kernel.h>
MODULE_LICENSE("GPL");
static int __init hello_init(void) { pr_info("hello\n"); return 0; }
static void __exit hello_exit(void) {}
module_init(hello_init);
module_exit(hello_exit);
EOF
  echo 'obj-m := hello.o' > "$1/Makefile"
}

# replace_section FILE NAME CONTENT: put CONTENT (a file) between the lines
# `<!-- NAME:begin -->` and `<!-- NAME:end -->` of FILE (appended when absent),
# so that each bench script regenerates its own part of a shared document.
replace_section() {
  python3 - "$1" "$2" "$3" <<'PYEOF'
import sys, os
path, name, content = sys.argv[1:4]
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
text = open(path).read() if os.path.exists(path) else ""
body = open(content).read().rstrip("\n")
block = f"{begin}\n{body}\n{end}"
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    text = head + block + tail
else:
    text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
open(path, "w").write(text)
PYEOF
}
