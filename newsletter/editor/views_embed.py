"""The sign-up box in the editor: the live box with its options as controls,
the snippets to paste, the sites allowed to show it, and sign-ups per source.

The options live in the snippet (URL parameters of the iframe, data
attributes of the placeholder), so each placement on a site can differ and
nothing is stored; this page only builds them and shows the result.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from flask import render_template, request

from newsletter.db import session_scope
from newsletter.editor.views import bp
from newsletter.extensions import settings
from newsletter.readers import box, service, signups

DAYS = 30


def snippets(base: str, options: box.BoxOptions) -> dict[str, str]:
    """The copy-paste HTML for each variant, and the host CSP they need."""
    query = options.query()
    src = f"{base}/embed" + (f"?{urlencode(query)}" if query else "")
    height = 220 if options.layout == "compact" else 420
    attributes = "".join(f' data-{name}="{escape(value, quote=True)}"' for name, value in query.items())
    return {
        "iframe": (
            f'<iframe src="{src.replace("&", "&amp;")}" title="Subscribe to GET THE SIGNAL" '
            f'width="100%" height="{height}" loading="lazy"></iframe>\n'
            f"<!-- optional: sizes the frame to fit the box -->\n"
            f'<script src="{base}/embed.js" async></script>'
        ),
        "script": f'<div data-gts-box{attributes}></div>\n<script src="{base}/embed.js" async></script>',
        "csp": f"script-src {base}; style-src {base}; connect-src {base}; frame-src {base}",
    }


@bp.get("/embed")
def embed_box():
    with session_scope() as session:
        tags = service.topic_tags(session, settings())
    options = box.parse_options(request.args, [t.slug for t in tags])
    query = options.query()
    return render_template(
        "editor/embed.html",
        options=options,
        tags=tags,
        preview_src=f"/embed?{urlencode(query)}" if query else "/embed",
        snippets=snippets(settings().base_url, options),
        origins=settings().allowed_embed_origins,
        origins_from_cors=settings().embed_origins is None,
        counts=signups.by_source(DAYS),
        days=DAYS,
        limits=box.LIMITS,
    )
