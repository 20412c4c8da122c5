package envelope

import (
	"encoding/binary"
	"fmt"
)

// BatchItem returns item i of a batch as a batch of its own (the framing
// with a count of 1 and the item's bytes as they were): what a dead letter
// of one bad item holds, whether or not its JSON could be read.
func BatchItem(data []byte, i int) ([]byte, error) {
	items, err := splitBatch(data)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(items) {
		return nil, fmt.Errorf("%w: batch has no item %d", ErrMalformed, i)
	}
	it := items[i]
	out := append(append([]byte{}, batchMagic...), 1)
	out = binary.AppendUvarint(out, uint64(len(it.meta)))
	out = append(out, it.meta...)
	out = binary.AppendUvarint(out, uint64(len(it.bodies)))
	for _, b := range it.bodies {
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out, nil
}
