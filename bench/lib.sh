# Shared by the bench scripts (sourced): the release binary, timing helpers
# and the hello-world module.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
kp="$repo/target/release/kpackfs"

now() { date +%s.%N; }
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
