"""python -m partners.brandsite BRAND_FILE [--port N]: serve one brand site.

The OAuth client comes from BRAND_ISSUER, BRAND_CLIENT_ID and BRAND_CLIENT_SECRET."""
from __future__ import annotations

import logging

import click

from partners.brandsite.config import Brand, Client


@click.command()
@click.argument("brand_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--port", type=int, default=None, help="Overrides the brand file's port.")
@click.option("--threads", default=8, show_default=True)
def main(brand_file, port, threads):
    from gunicorn.app.base import BaseApplication

    from partners.brandsite.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    brand = Brand.load(brand_file, port=port)
    client = Client.from_env()

    class Site(BaseApplication):
        def load_config(self) -> None:
            # One process: the brand's sessions are in its memory (back-channel logout must
            # reach the process that holds them).
            for key, value in {"bind": f"{brand.host}:{brand.port}", "workers": 1, "worker_class": "gthread",
                               "threads": threads, "control_socket_disable": True}.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(brand, client)

    click.echo(f"{brand.name} on {brand.base_url}/ (OpenID provider {client.issuer})")
    Site().run()


if __name__ == "__main__":
    main()
