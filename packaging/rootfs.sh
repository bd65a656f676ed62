#!/bin/sh
# Lay out the files of the Vouch image under OUT/rootfs: the vouch binary at /usr/local/bin/vouch,
# every shared library it loads (as ldd resolves them on the machine that built it, the dynamic
# loader included, so the runtime image needs no C library of its own), the policies under
# /usr/share/vouch/policies (the verifier installs the default one, compiled in, at first start;
# the examples are there for `vouch policy add`), shell completions and man pages, the image's
# configuration file /etc/vouch/vouch.toml; and under
# OUT/data/vouch the data directory /var/lib/vouch (empty, mode 0700), which the Containerfile
# copies in owned by the image's user.
#
#   packaging/rootfs.sh BINARY OUT
#
# The Containerfile's build stage runs it on the release binary it built; the packaging test
# runs it on the binary cargo already built and hands OUT to the image build in place of that
# stage (see packaging/Containerfile).
set -eu
bin=$1
out=$2
dest=$out/rootfs
repo=$(cd "$(dirname "$0")/.." && pwd)

[ -x "$bin" ] || { echo "rootfs.sh: $bin is not an executable" >&2; exit 1; }
mkdir -p "$out/data" "$dest/usr/local/bin" "$dest/usr/share/vouch" "$dest/var/lib" \
    "$dest/usr/share/man/man1" "$dest/usr/share/bash-completion/completions"
mkdir -p "$out/data/vouch"
chmod 0700 "$out/data/vouch"
cp "$bin" "$dest/usr/local/bin/vouch"
chmod 0755 "$dest/usr/local/bin/vouch"

# Every library ldd names by path ("libx.so => /lib/.../libx.so (0x...)" and the loader's own
# "/lib64/ld-linux-x86-64.so.2 (0x...)"), copied to the same path with symlinks resolved; and
# the TPM TCTI modules libtss2-tctildr loads at run time (device, tabrmd, swtpm, mssim), which
# ldd cannot see, with theirs.
libs() {
    ldd "$1" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
}
tctis=$(ldconfig -p | awk '$1 ~ /^libtss2-tcti-.*\.so\.0$/ { print $NF }')
{
    libs "$bin"
    for t in $tctis; do
        echo "$t"
        libs "$t"
    done
} | sort -u | while read -r lib; do
    mkdir -p "$dest$(dirname "$lib")"
    cp -L "$lib" "$dest$lib"
done
[ -n "$(ls "$dest"/lib*/ 2>/dev/null)" ] || [ -n "$(ls "$dest"/usr/lib* 2>/dev/null)" ] || {
    echo "rootfs.sh: ldd named no library for $bin" >&2
    exit 1
}

# The image's configuration file (VOUCH_CONFIG): replaced as a whole by a mounted one (on
# Kubernetes, a ConfigMap), so it sets nothing environment variables would have to override.
mkdir -p "$dest/etc/vouch"
cat >"$dest/etc/vouch/vouch.toml" <<'TOML'
# The Vouch image's configuration: the verifier on every address of the container at the
# default port, both roles' state in the /var/lib/vouch volume. Mount your own file here (see
# /usr/share/vouch/vouch.example.toml for every setting).
[server]
listen = "0.0.0.0:8443"
data_dir = "/var/lib/vouch/server"

[agent]
data_dir = "/var/lib/vouch/agent"
TOML

cp -R "$repo/policies" "$dest/usr/share/vouch/policies"
cp "$repo/vouch.example.toml" "$dest/usr/share/vouch/vouch.example.toml"
"$bin" completions bash >"$dest/usr/share/bash-completion/completions/vouch"
"$bin" man --dir "$dest/usr/share/man/man1" >/dev/null
