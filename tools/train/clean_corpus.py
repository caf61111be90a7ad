#!/usr/bin/env python3
"""Cleans the Debian-packaged texts of the demo model's corpus to plain text (stdlib only).

Sources, in this order (sorted file lists, so the output is reproducible):
  debian-handbook (HTML, en-US), debian-reference (HTML, en), the King James Bible (the output
  of `bible Gen1:1-Rev22:21`), the Python 3.11 documentation (reST sources), English manual
  pages (roff, man1..man8), the Linux 6.1 kernel's Documentation/ (reST / text, translations
  left out), then code: Python's standard library and part of the kernel's C sources.
Documents are written one after another, separated by a line holding only a form feed (\\f).
"""
import argparse
import gzip
import html
import html.parser
import lzma
import re
import sys
import tarfile
from pathlib import Path

SEP = "\n\f\n"
MB = 1024 * 1024

# Per-source caps in bytes of cleaned text: the packed corpus must stay under 40 MB of xz.
CAPS = {
    "handbook": 8 * MB,
    "reference": 4 * MB,
    "bible": 6 * MB,
    "python-doc": 14 * MB,
    "man": 40 * MB,
    "kernel-doc": 30 * MB,
    "python-code": 10 * MB,
    "kernel-code": 24 * MB,
}


def squeeze(text):
    """Trims trailing spaces and collapses runs of blank lines to one."""
    lines = [l.rstrip() for l in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out, blank = [], 0
    for l in lines:
        if not l.strip():
            blank += 1
            if blank > 1:
                continue
            l = ""
        else:
            blank = 0
        out.append(l.replace("\f", " "))
    return "\n".join(out).strip()


class HtmlText(html.parser.HTMLParser):
    """Text of an HTML page: block elements become lines, navigation and scripts are dropped."""

    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd",
             "table", "blockquote", "section", "title", "ul", "ol", "dl"}
    SKIP = {"script", "style", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip, self.pre = [], 0, 0
        self.nav_depth = []  # div nesting of navigation blocks

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag in self.SKIP:
            self.skip += 1
        if tag == "div":
            nav = any(k in cls for k in ("navheader", "navfooter", "toc", "footnotes"))
            self.nav_depth.append(nav)
            if nav:
                self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        if tag == "div" and self.nav_depth:
            if self.nav_depth.pop():
                self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self):
        return squeeze("".join(self.parts))


def html_to_text(raw):
    p = HtmlText()
    p.feed(raw)
    p.close()
    return p.text()


ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")
UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+<>.])\1{2,}\s*$")


def rst_to_text(raw):
    out = []
    for line in raw.split("\n"):
        if UNDERLINE.match(line):
            continue
        s = line.strip()
        if s.startswith(".. "):
            # Directive or comment: keep a title given after "::" (note, warning), drop the rest.
            m = re.match(r"\.\.\s+[\w:-]+::\s*(.*)$", s)
            if m and m.group(1) and not m.group(1).startswith(("/", "*")):
                out.append(m.group(1))
            continue
        if re.match(r"^\s+:[\w -]+:( .*)?$", line):  # directive options
            continue
        line = ROLE.sub(r"\1", line)
        line = LINK.sub(r"\1", line)
        line = line.replace("``", "").replace("**", "")
        line = re.sub(r"\|(\w+)\|", r"\1", line)
        if line.rstrip().endswith("::"):
            line = line.rstrip()[:-1]
        out.append(line)
    return squeeze("\n".join(out))


ROFF_SPECIAL = {
    "em": "--", "en": "-", "hy": "-", "mi": "-", "bu": "*", "co": "(C)", "rg": "(R)",
    "lq": '"', "rq": '"', "oq": "'", "cq": "'", "aq": "'", "dq": '"', "ga": "`", "ti": "~",
    "ha": "^", "rs": "\\", "ba": "|", "or": "|", "bv": "|", "<=": "<=", ">=": ">=", "!=": "!=",
    "mu": "x", "di": "/", "+-": "+-", "->": "->", "<-": "<-", "de": " degrees", "tm": "(TM)",
    "Fo": "<<", "Fc": ">>", "fo": "<", "fc": ">", "lh": "<=", "rh": "=>", "sc": "S", "dg": "+",
}
TEXT_MACROS = {"B", "I", "SM", "SB", "BI", "BR", "IB", "IR", "RB", "RI", "TQ", "UR", "MT", "OP",
               "Nm", "Nd", "Ar", "Fl", "Op", "Cm", "Pa", "Xr", "Em", "Sy", "Va", "Fn", "Fa", "Ft",
               "Dv", "Er", "Ev", "Li", "Ql", "Dq", "Sq", "Pq", "Ic", "Ad", "It", "Tn", "Ux"}
HEADING_MACROS = {"SH", "SS", "Sh", "Ss"}
BREAK_MACROS = {"PP", "LP", "P", "sp", "br", "TP", "IP", "HP", "Pp", "Bl", "El", "Bd", "Ed", "RS",
                "RE", "nf", "fi", "EX", "EE"}


def roff_args(args):
    words = re.findall(r'"((?:[^"]|"")*)"|(\S+)', args)
    return " ".join(a or b for a, b in words).replace('""', '"')


def roff_inline(text):
    text = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", text)
    text = re.sub(r"\\\*(\[[^\]]*\]|\(..|.)", "", text)
    text = re.sub(r"\\\((..)", lambda m: ROFF_SPECIAL.get(m.group(1), ""), text)
    text = re.sub(r"\\\[(\w+)\]", lambda m: ROFF_SPECIAL.get(m.group(1), ""), text)
    text = re.sub(r"\\[sk]([+-]?\d+|\(..|\[[^\]]*\])", "", text)
    text = re.sub(r"\\[hvwlLbDx]'[^']*'", "", text)
    text = re.sub(r"\\n(\[[^\]]*\]|\(..|.)", "", text)
    text = (text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "").replace("\\ ", " ")
            .replace("\\~", " ").replace("\\|", "").replace("\\^", "").replace("\\0", " ")
            .replace("\\c", "").replace("\\:", "").replace("\\%", "").replace("\\'", "'")
            .replace("\\`", "`").replace("\\.", "."))
    return text


def roff_to_text(raw):
    out = []
    for line in raw.split("\n"):
        if line.startswith(('.\\"', "'\\\"", '\\"', ".\\}")):
            continue
        if line.startswith((".", "'")):
            m = re.match(r"[.']\s*(\S+)\s*(.*)$", line)
            if not m:
                continue
            macro, args = m.groups()
            if macro in HEADING_MACROS:
                out += ["", roff_inline(roff_args(args)).upper() if macro in ("SH", "Sh") else
                        roff_inline(roff_args(args))]
            elif macro in TEXT_MACROS:
                out.append(roff_inline(roff_args(args)))
            elif macro in BREAK_MACROS:
                out.append("")
                if macro in ("IP", "TP", "It") and args:
                    out.append(roff_inline(roff_args(args)))
            continue
        out.append(roff_inline(line))
    return squeeze("\n".join(out))


def code_text(raw):
    return squeeze(raw.expandtabs(4))


class Writer:
    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8")
        self.sizes, self.docs = {}, {}

    def full(self, source):
        return self.sizes.get(source, 0) >= CAPS[source]

    def add(self, source, text):
        text = text.strip()
        if len(text) < 200 or self.full(source):
            return
        # English and code only: drop documents with many non-ASCII characters.
        non_ascii = sum(1 for c in text if ord(c) > 127)
        if non_ascii > 0.02 * len(text):
            return
        self.f.write(text + SEP)
        n = len(text.encode("utf-8")) + len(SEP)
        self.sizes[source] = self.sizes.get(source, 0) + n
        self.docs[source] = self.docs.get(source, 0) + 1

    def close(self):
        self.f.close()


def read(path):
    data = Path(path).read_bytes()
    if str(path).endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def html_pages(w, source, folder, pattern):
    for p in sorted(Path(folder).glob(pattern)):
        w.add(source, html_to_text(read(p)))


def bible_books(w, path):
    """`bible` (without a terminal) prints "Genesis 1", a blank line, then verses "  1 In the
    beginning ..." wrapped at 80 columns: one document per book, one line per verse."""
    book, lines = None, []
    for line in read(path).split("\n"):
        head = re.match(r"^(\S.*?) (\d+)$", line)
        verse = re.match(r"^\s+(\d+) (.*)$", line)
        if head:
            name, chapter = head.groups()
            if name != book and lines:
                w.add("bible", "\n".join(lines))
                lines = []
            if name != book:
                lines = [name]
            book = name
            lines += ["", f"Chapter {chapter}", ""]
        elif verse:
            lines.append(f"{verse.group(1)} {verse.group(2).strip()}")
        elif line.strip() and lines:
            lines[-1] += " " + line.strip()
    if lines:
        w.add("bible", "\n".join(lines))


def man_pages(w, listing):
    """The pages named in `listing` (one path a line: those of a fixed list of packages, so the
    corpus does not depend on what else the machine has installed)."""
    paths = sorted({l.strip() for l in read(listing).split("\n")
                    if re.match(r"^/usr/share/man/man[1-8]/", l.strip())})
    for p in map(Path, paths):
        if w.full("man"):
            return
        if not p.is_file():
            continue
        try:
            raw = read(p)
        except (OSError, EOFError):
            continue
        if raw.lstrip().startswith(".so "):  # an alias of another page
            continue
        w.add("man", roff_to_text(raw))


def python_docs(w):
    root = Path("/usr/share/doc/python3.11/html/_sources")
    for p in sorted(root.rglob("*.rst.txt")):
        if "whatsnew/changelog" in str(p):
            continue
        w.add("python-doc", rst_to_text(read(p)))


def python_code(w):
    root = Path("/usr/lib/python3.11")
    for p in sorted(root.rglob("*.py")):
        rel = str(p.relative_to(root))
        if rel.startswith(("test/", "lib2to3/tests", "idlelib/idle_test", "site-packages",
                           "dist-packages", "encodings/", "pydoc_data/")) or "/tests/" in rel:
            continue
        w.add("python-code", code_text(read(p)))


KERNEL_CODE_DIRS = ("kernel/", "mm/", "lib/", "fs/", "net/ipv4/", "net/core/", "block/", "init/",
                    "ipc/", "security/", "crypto/", "drivers/char/", "drivers/block/")


def kernel(w, tarball):
    with lzma.open(tarball) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
        for m in tar:
            if not m.isfile():
                continue
            name = m.name.split("/", 1)[1] if "/" in m.name else m.name
            doc = name.startswith("Documentation/") and name.endswith((".rst", ".txt")) and \
                "/translations/" not in name
            code = name.startswith(KERNEL_CODE_DIRS) and name.endswith((".c", ".h"))
            if not (doc or code):
                continue
            data = tar.extractfile(m).read().decode("utf-8", errors="replace")
            if doc:
                w.add("kernel-doc", rst_to_text(data))
            else:
                w.add("kernel-code", code_text(data))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bible", required=True, help="output of `bible Gen1:1-Rev22:21`")
    ap.add_argument("--kernel", default="/usr/src/linux-source-6.1.tar.xz")
    ap.add_argument("--man-list", required=True, help="manual page paths, one a line")
    args = ap.parse_args()
    w = Writer(args.out)
    html_pages(w, "handbook", "/usr/share/doc/debian-handbook/html/en-US", "*.html")
    html_pages(w, "reference", "/usr/share/debian-reference", "*.en.html")
    bible_books(w, args.bible)
    python_docs(w)
    man_pages(w, args.man_list)
    kernel(w, args.kernel)
    python_code(w)
    w.close()
    total = sum(w.sizes.values())
    for s in CAPS:
        print(f"{s:12s} {w.docs.get(s, 0):6d} documents {w.sizes.get(s, 0) / MB:7.1f} MB",
              file=sys.stderr)
    print(f"{'total':12s} {sum(w.docs.values()):6d} documents {total / MB:7.1f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
