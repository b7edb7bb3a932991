"""Commerce messages: one product, a product list, the catalog (Meta's "Sell products and
services" guides), and the order messages of payments in India: `order_details` (an invoice the
customer pays in WhatsApp) and `order_status` (its later updates).

The order rules are Meta's, "Receive payments via payment gateways"
(https://developers.facebook.com/docs/whatsapp/cloud-api/payments-api/payments-in/pg) and
"Accept payments via payment links" (.../payments-in/payment-links): a reference_id of at most 35
letters, digits, `_`, `-` or `.`; INR amounts as {value, offset: 100}; an item's price is its
sale_amount when it has one; subtotal = sum(price x quantity); total = subtotal + tax + shipping
- discount; an expiration at least 300 seconds away.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, HttpUrl, Short
from worker.delivery.intents.interactive import Body, Header, TextBlock, TextHeader

ReferenceId = Annotated[str, Field(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9_.-]+$")]
Description = Annotated[str, Field(max_length=60)]
MIN_EXPIRY_SECONDS = 300


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


# --- orders (payments in India) --------------------------------------------------------------------


class Amount(ApiObject):
    """Money as Meta writes it: an integer `value` in hundredths (offset 100: paise for INR)."""

    value: Annotated[int, Field(ge=0)]
    offset: Literal[100]


class Charge(Amount):
    description: Description | None = None


class Discount(Charge):
    discount_program_name: Description | None = None


class OrderItem(ApiObject):
    retailer_id: Short
    name: Annotated[str, Field(min_length=1, max_length=60)]
    amount: Amount
    sale_amount: Amount | None = None  # the discounted price; counts in the subtotal when given
    quantity: Annotated[int, Field(ge=1)]
    country_of_origin: Short | None = None
    importer_name: Short | None = None
    importer_address: dict[str, str] | None = None

    @model_validator(mode="after")
    def _sale_below_price(self) -> OrderItem:
        if self.sale_amount is not None and self.sale_amount.value >= self.amount.value:
            raise ValueError("sale_amount must be less than amount")
        return self

    @property
    def price(self) -> int:
        return (self.sale_amount or self.amount).value


class Expiration(ApiObject):
    timestamp: Annotated[str, Field(pattern=r"^[0-9]+$")]  # UTC, in seconds
    description: Annotated[str, Field(max_length=120)] | None = None

    @model_validator(mode="after")
    def _far_enough(self) -> Expiration:
        """Checked against the clock at each validation: at enqueue, and again when sent."""
        if int(self.timestamp) < time.time() + MIN_EXPIRY_SECONDS:
            raise ValueError(f"timestamp must be at least {MIN_EXPIRY_SECONDS} seconds from now")
        return self


class Order(ApiObject):
    status: Literal["pending"]  # an order_details message always starts pending
    catalog_id: Short | None = None
    expiration: Expiration | None = None
    items: Annotated[list[OrderItem], Field(min_length=1)]
    subtotal: Amount
    tax: Charge
    shipping: Charge | None = None
    discount: Discount | None = None

    @model_validator(mode="after")
    def _subtotal(self) -> Order:
        total = sum(item.price * item.quantity for item in self.items)
        if self.subtotal.value != total:
            raise ValueError(
                f"subtotal.value {self.subtotal.value} is not the items' price x quantity summed ({total})"
            )
        return self

    @property
    def total(self) -> int:
        extra = (self.shipping.value if self.shipping else 0) - (self.discount.value if self.discount else 0)
        return self.subtotal.value + self.tax.value + extra


class PaymentGateway(ApiObject):
    type: Literal["billdesk", "payu", "razorpay", "zaakpay"]
    configuration_name: Short  # as set up in WhatsApp Manager


class PaymentLink(ApiObject):
    uri: HttpUrl


class PaymentSetting(ApiObject):
    type: Literal["payment_gateway", "payment_link"]
    payment_gateway: PaymentGateway | None = None
    payment_link: PaymentLink | None = None

    @model_validator(mode="after")
    def _matching_object(self) -> PaymentSetting:
        other = "payment_link" if self.type == "payment_gateway" else "payment_gateway"
        if getattr(self, self.type) is None or getattr(self, other) is not None:
            raise ValueError(f"a '{self.type}' setting carries a '{self.type}' object, and only that")
        return self


class GoodsType(StrEnum):
    DIGITAL = "digital-goods"
    PHYSICAL = "physical-goods"


class OrderDetailsParameters(ApiObject):
    reference_id: ReferenceId
    type: GoodsType
    # How the customer pays: payment_settings, or (as in Meta's example) the older UPI pair
    payment_settings: Annotated[list[PaymentSetting], Field(min_length=1)] | None = None
    payment_type: Literal["upi"] | None = None
    payment_configuration: Short | None = None
    currency: Literal["INR"]
    total_amount: Amount
    order: Order

    @model_validator(mode="after")
    def _payment_and_total(self) -> OrderDetailsParameters:
        legacy = self.payment_type is not None or self.payment_configuration is not None
        if self.payment_settings is not None and legacy:
            raise ValueError(
                "payment_settings, or the older payment_type and payment_configuration: not both"
            )
        if self.payment_settings is None and (
            self.payment_type is None or self.payment_configuration is None
        ):
            raise ValueError("needs payment_settings, or payment_type 'upi' with payment_configuration")
        if self.total_amount.value != self.order.total:
            raise ValueError(
                f"total_amount.value {self.total_amount.value} is not subtotal + tax + shipping"
                f" - discount ({self.order.total})"
            )
        return self


class OrderDetailsAction(ApiObject):
    name: Literal["review_and_pay"]
    parameters: OrderDetailsParameters


class OrderDetailsMessage(ApiObject):
    """An invoice the customer reviews and pays without leaving WhatsApp."""

    type: Literal["order_details"]
    header: Header | None = None
    body: Body
    footer: TextBlock | None = None
    action: OrderDetailsAction


class OrderStatus(StrEnum):
    """The statuses an order_status message moves an order to."""

    PENDING = "pending"
    PROCESSING = "processing"
    PARTIALLY_SHIPPED = "partially-shipped"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELED = "canceled"


class OrderUpdate(ApiObject):
    status: OrderStatus
    description: Annotated[str, Field(max_length=120)] | None = None


class OrderStatusParameters(ApiObject):
    reference_id: ReferenceId  # the order_details message's
    order: OrderUpdate


class OrderStatusAction(ApiObject):
    name: Literal["review_order"]
    parameters: OrderStatusParameters


class OrderStatusMessage(ApiObject):
    """A change of an order's status, shown on the order the customer received."""

    type: Literal["order_status"]
    body: Body
    footer: TextBlock | None = None
    action: OrderStatusAction
