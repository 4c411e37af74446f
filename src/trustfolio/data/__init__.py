"""Market data: the `Panel`, loaders, cleaning and validation, features."""

from trustfolio.data.panel import FIELDS, PRICE_FIELDS, Calendar, Panel

__all__ = ["FIELDS", "PRICE_FIELDS", "Calendar", "Panel"]
