package envelope

import (
	"encoding/binary"
	"fmt"
)

// BatchItem returns item i of a batch as a batch of its own (the framing,
// in the batch's version, with a count of 1 and the item's bytes as they
// were): what a dead letter of one bad item holds, whether or not its JSON
// or header sets could be read.
func BatchItem(data []byte, i int) ([]byte, error) {
	items, version, err := splitBatch(data)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(items) {
		return nil, fmt.Errorf("%w: batch has no item %d", ErrMalformed, i)
	}
	raw := items[i].raw
	out := make([]byte, 0, len(batchMagic)+1+len(raw))
	out = append(out, batchMagic[:len(batchMagic)-1]...)
	out = append(out, version)
	out = binary.AppendUvarint(out, 1)
	return append(out, raw...), nil
}
