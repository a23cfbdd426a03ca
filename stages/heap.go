package stages

// completionHeap orders completions by start position (container/heap).
type completionHeap []Completion

func (h completionHeap) Len() int           { return len(h) }
func (h completionHeap) Less(i, j int) bool { return h[i].Start < h[j].Start }
func (h completionHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *completionHeap) Push(x any)        { *h = append(*h, x.(Completion)) }
func (h *completionHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = Completion{}
	*h = old[:len(old)-1]
	return c
}
