"""Alembic environment: the engine comes from ``portal.db.alembic_config``."""

from typing import Any

from alembic import context

from portal.core.models import Base, UTCDateTime, in_schema_of

engine = context.config.attributes["engine"]


def render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    # Migrations stay independent of the models module: UTCDateTime is a plain DateTime column.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
        include_object=in_schema_of(connection.dialect.name),
    )
    context.run_migrations()
