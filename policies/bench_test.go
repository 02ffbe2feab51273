package policies

import (
	"context"
	"testing"
)

func BenchmarkCheckResource(b *testing.B) {
	p, _ := Load(context.Background())
	rs := goodStack(b)
	in := Input(rs[0])
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.eval(context.Background(), in, false, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckStack(b *testing.B) {
	p, _ := Load(context.Background())
	in := StackInput(goodStack(b))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.eval(context.Background(), in, true, ""); err != nil {
			b.Fatal(err)
		}
	}
}
