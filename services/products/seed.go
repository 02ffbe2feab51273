package products

import "github.com/google/uuid"

// seedNamespace derives the demo products' ids from their names, so seeding twice inserts
// nothing the second time.
var seedNamespace = uuid.MustParse("6f1c7b0e-3d1a-4b8e-9f77-2a4c5e8d9b10")

// DemoCatalog is the catalog a fresh installation starts with.
func DemoCatalog() []Product {
	items := []struct {
		name, desc string
		price      int64
		stock      int
	}{
		{"Espresso Beans 1kg", "Dark roast, whole beans.", 2490, 120},
		{"Pour-over Kettle", "Gooseneck kettle, 1 litre, stainless steel.", 5900, 40},
		{"Ceramic Mug", "350 ml, dishwasher safe.", 1200, 300},
		{"Hand Grinder", "Conical burr grinder with 40 settings.", 8900, 25},
		{"Paper Filters (100)", "Bleached filters for 02 drippers.", 650, 500},
		{"Milk Frother", "Battery-powered handheld frother.", 1990, 80},
		{"Travel Tumbler", "Vacuum-insulated, 470 ml.", 2790, 150},
		{"Digital Scale", "0.1 g resolution with timer.", 3490, 60},
	}
	out := make([]Product, len(items))
	t := now()
	for i, it := range items {
		out[i] = Product{ID: uuid.NewSHA1(seedNamespace, []byte(it.name)), Name: it.name, Description: it.desc,
			PriceCents: it.price, Currency: "USD", Stock: it.stock, CreatedAt: t, UpdatedAt: t}
	}
	return out
}
