"""Install links and the downloads made through them."""

from __future__ import annotations

from sqlalchemy import func, select, update

from appyard.backends.db import tables as t
from appyard.backends.db.rows import Repo, to_obj, to_row
from appyard.core.models import InstallDownload, InstallLink


class InstallLinkRepo(Repo):
    table = t.install_links

    def add(self, link: InstallLink) -> None:
        self._insert(to_row(link))

    def get(self, link_id: str) -> InstallLink | None:
        row = self._one(t.install_links.c.id == link_id)
        return to_obj(InstallLink, row) if row else None

    def get_by_token_hash(self, token_hash: str) -> InstallLink | None:
        row = self._one(t.install_links.c.token_hash == token_hash)
        return to_obj(InstallLink, row) if row else None

    def for_build(self, build_id: str) -> list[InstallLink]:
        q = (
            select(t.install_links)
            .where(t.install_links.c.build_id == build_id)
            .order_by(t.install_links.c.created_at.desc(), t.install_links.c.id)
        )
        return [to_obj(InstallLink, r) for r in self.conn.execute(q)]

    def save(self, link: InstallLink) -> None:
        self.conn.execute(
            update(t.install_links).where(t.install_links.c.id == link.id).values(**to_row(link))
        )

    def every(self) -> list[InstallLink]:
        rows = self.conn.execute(select(t.install_links).order_by(t.install_links.c.id))
        return [to_obj(InstallLink, r) for r in rows]


class InstallDownloadRepo(Repo):
    table = t.install_downloads

    def add(self, download: InstallDownload) -> None:
        self._insert(to_row(download))

    def for_build(self, build_id: str, limit: int | None = None) -> list[InstallDownload]:
        q = (
            select(t.install_downloads)
            .where(t.install_downloads.c.build_id == build_id)
            .order_by(t.install_downloads.c.at.desc(), t.install_downloads.c.id.desc())
        )
        if limit is not None:
            q = q.limit(limit)
        return [to_obj(InstallDownload, r) for r in self.conn.execute(q)]

    def count_for_build(self, build_id: str) -> int:
        q = select(func.count()).where(t.install_downloads.c.build_id == build_id)
        return int(self.conn.execute(q).scalar_one())
