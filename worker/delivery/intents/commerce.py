"""Commerce messages: one product, a product list, the catalog (Meta's "Sell products and
services" guides)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, Short
from worker.delivery.intents.interactive import Body, TextBlock, TextHeader


class ProductItem(ApiObject):
    product_retailer_id: Short


class ProductSection(ApiObject):
    title: Annotated[str, Field(min_length=1, max_length=24)] | None = None
    product_items: Annotated[list[ProductItem], Field(min_length=1, max_length=30)]


class ProductAction(ApiObject):
    catalog_id: Short
    product_retailer_id: Short


class ProductListAction(ApiObject):
    catalog_id: Short
    sections: Annotated[list[ProductSection], Field(min_length=1, max_length=10)]

    @model_validator(mode="after")
    def _products(self) -> ProductListAction:
        count = sum(len(s.product_items) for s in self.sections)
        if count > 30:
            raise ValueError(f"a product list has at most 30 products in all (got {count})")
        if len(self.sections) > 1 and any(s.title is None for s in self.sections):
            raise ValueError("every section needs a title when there is more than one")
        return self


class CatalogParameters(ApiObject):
    thumbnail_product_retailer_id: Short


class CatalogAction(ApiObject):
    name: Literal["catalog_message"]
    parameters: CatalogParameters | None = None


class ProductMessage(ApiObject):
    type: Literal["product"]
    body: Body | None = None
    footer: TextBlock | None = None
    action: ProductAction


class ProductListMessage(ApiObject):
    type: Literal["product_list"]
    header: TextHeader
    body: Body
    footer: TextBlock | None = None
    action: ProductListAction


class CatalogMessage(ApiObject):
    type: Literal["catalog_message"]
    body: Body
    footer: TextBlock | None = None
    action: CatalogAction
