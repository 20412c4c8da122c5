package compare

import "testing"

func TestNumEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1", "1", true}, {"1", "1.0", true}, {"1", "1e0", true}, {"1", "10E-1", true}, {"100", "1e2", true},
		{"100", "1E+2", true}, {"0", "-0", true}, {"0", "0.000", true}, {"0", "0e5", true}, {"-0.0", "0E-7", true},
		{"0.001", "1e-3", true}, {"123.456", "123456e-3", true}, {"-5", "-5.00", true},
		{"1", "-1", false}, {"1", "2", false}, {"1", "10", false}, {"0.1", "0.01", false}, {"0", "1e-400", false},
		{"12345678901234567890", "12345678901234567891", false}, {"9007199254740993", "9007199254740992", false},
		{"1e400", "1e400", true}, {"1e400", "10e399", true}, {"1e400", "1e401", false},
		{"1e0000000000000000000000001", "10", true}, {"1e1000000000000000000", "10e999999999999999999", false},
	}
	for _, tt := range tests {
		if got := numEqual([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("numEqual(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := numEqual([]byte(tt.b), []byte(tt.a)); got != tt.want {
			t.Errorf("numEqual(%s, %s) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}
