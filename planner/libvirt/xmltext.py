"""libvirt-style XML text: two-space indentation, single-quoted attributes, a final newline, no declaration."""

from __future__ import annotations

from lxml import etree


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return _escape_text(text).replace("'", "&apos;").replace('"', "&quot;")


def _write(element: etree._Element, depth: int, out: list[str]) -> None:
    indent = "  " * depth
    attrs = "".join(f" {key}='{_escape_attr(value)}'" for key, value in element.attrib.items())
    children = list(element)
    if children:
        if element.text and element.text.strip():
            raise ValueError(f"<{element.tag}> mixes text and child elements")
        out.append(f"{indent}<{element.tag}{attrs}>\n")
        for child in children:
            _write(child, depth + 1, out)
        out.append(f"{indent}</{element.tag}>\n")
    elif element.text is not None:
        out.append(f"{indent}<{element.tag}{attrs}>{_escape_text(element.text)}</{element.tag}>\n")
    else:
        out.append(f"{indent}<{element.tag}{attrs}/>\n")


def serialize(element: etree._Element) -> str:
    """libvirt-style text: two-space indentation, single-quoted attributes, ends with a newline, no XML
    declaration."""
    out: list[str] = []
    _write(element, 0, out)
    return "".join(out)
